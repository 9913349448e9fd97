"""The agent started before L1's modules load waits for init to name its port in a file."""
import threading
import time

from hil.lab.agent.__main__ import wait_for_port


def test_waits_for_the_file_then_reads_the_port(tmp_path):
    name = tmp_path / "hil-port"

    def init():
        time.sleep(0.1)
        (tmp_path / "hil-port.tmp").write_text("/dev/vport1p1\n")
        (tmp_path / "hil-port.tmp").rename(name)

    t = threading.Thread(target=init)
    t0 = time.monotonic()
    t.start()
    assert wait_for_port(name) == "/dev/vport1p1"
    assert time.monotonic() - t0 >= 0.1
    t.join()


def test_init_starts_the_agent_only_without_a_baseline_and_names_the_port_atomically():
    from hil.lab.assets.l1_image import INIT_SCRIPT
    text = INIT_SCRIPT.read_text()
    start = text.index("python3 -m hil.lab.agent serve @/run/hil-port &")
    assert text.rindex('if [ ! -x /baseline.sh ]', 0, start) < start < text.index("load_group common")
    assert 'mv /run/hil-port.tmp /run/hil-port' in text and 'wait "$agent"' in text
