"""The real nested stack: exact exit counts per probe operation, for two different counts
each, judged against the model. A count change must change the measurement."""
import pytest

pytestmark = pytest.mark.lab

# scenario -> requested count per op (read back from the scenario file, not restated here)
SCENARIOS = ("probe-counts-small", "probe-counts-large")


@pytest.fixture(scope="module")
def runs(hil_lab):
    return {name: hil_lab.run(name) for name in SCENARIOS}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_case_passes(runs, scenario):
    result = runs[scenario].result
    bad = [(c.name, c.verdict.value, c.detail) for c in result.cases if c.verdict.value != "PASS"]
    assert bad == [], bad


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("op,reason,per_op", [
    ("cpuid", "cpuid", 1),
    ("pio-kernel", "io", 1),
    ("pio-user", "io", 1),
    ("msr", "msr", 1),
    ("hlt", "hlt", 1),
    ("hlt", "msr", 2),      # TMICT write + EOI write per iteration
])
def test_exact_exits(runs, scenario, op, reason, per_op):
    run = runs[scenario]
    count = next(o.count for o in run.scenario.workload.ops if o.op == op)
    got = run.measurement.op(op)
    assert got.count == count
    assert got.exits.get(reason, 0) == per_op * count


def test_counts_differ_between_scenarios(runs):
    small, large = (runs[s].measurement for s in SCENARIOS)
    for op in ("cpuid", "pio-kernel", "pio-user", "msr", "hlt"):
        assert small.op(op).count != large.op(op).count
        assert small.op(op).exits != large.op(op).exits


def test_kernel_vs_user_port_io(runs):
    """Both kinds of PIO exit once; only the user port reaches QEMU (kvm_pio per port)."""
    m = runs["probe-counts-large"].measurement
    assert m.pio["0x4d0/in"] == m.op("pio-kernel").count
    assert m.pio["0x1234/out"] == m.op("pio-user").count


def test_kvm_counters_cross_check(runs):
    for run in runs.values():
        assert run.case("kvm-counters").verdict.value == "PASS"
        assert run.measurement.counters["io_exits"] == run.measurement.exits_all["io"]


def test_provenance_recorded(runs):
    prov = runs["probe-counts-small"].result.provenance
    assert prov["accel"]["accel"] in ("kvm", "tcg")
    assert prov["l1"]["image"]["kernel_package"].startswith("linux-image-")
    assert prov["l1"]["agent"]["arch"] in ("svm", "vmx")
    assert prov["l1"]["argv"][0].endswith("qemu-system-x86_64")
    assert "-kernel" in prov["l2"]["argv"] and prov["l2"]["qemu"].startswith("QEMU")
    assert prov["l0_qemu"].startswith("QEMU")


def test_repro_script_reruns_the_same_l2_by_itself(runs, tmp_path):
    """repro.sh is standalone: it boots L1 with hil's command line and replays the requests."""
    import subprocess
    repro = runs["probe-counts-small"].out_dir / "repro.sh"
    proc = subprocess.run(["sh", str(repro)], cwd=tmp_path, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "hil-probe: event=done status=ok ops=5" in proc.stdout
    assert '"ended_by": "done"' in proc.stdout
