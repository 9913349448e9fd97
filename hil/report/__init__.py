"""Front-end renderings of a RunResult: a text table (text), result.json (json), JUnit XML (junit)."""
