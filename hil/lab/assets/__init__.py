"""Guest images built from Debian packages, cached under the XDG cache dir by their inputs."""
