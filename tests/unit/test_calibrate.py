"""hil calibrate's pure part: a calibrate run's result turned into the host profile a user
keeps, read back as the scenario loader reads it; a run that cannot calibrate says why."""
import json
from pathlib import Path

import pytest

from hil.calibrate import CalibrationError, SpeedChanged, calibrated, profile_text
from hil.scenario.host_profile import load_host_profile
from hil.model.cost import HostCosts
from hil.model.latency import path_cycles
from hil.scenario.probe_ops import spec
from tests.unit.test_verdict_latency import DELIVERY, EXIT, KHZ, run, spread


def result_doc(load=0.5, msr_extra=0, pio_user=None):
    lat = spread(path_cycles(spec("dev-msi").latency_path, "stock-svm", "svm",
                             HostCosts(exit_entry=EXIT, ipi=DELIVERY, nmi=DELIVERY)))
    r = run(lat, load=load)
    d = json.loads(json.dumps(r.to_dict(), default=str))
    d["provenance"].update({"host": {"cpu": "Test CPU", "kernel": "6.18", "nproc": 2}, "l0_qemu": "QEMU 10.0.2"})
    if msr_extra:
        d["cases"][0]["verdict"], d["cases"][0]["detail"] = "FAIL", "cpuid: predicted 64, measured 65"
    if pio_user is not None:          # cycles per pio-user iteration
        op, = [o for o in d["measurement"]["ops"] if o["op"] == "pio-user"]
        op["samples"]["iter"] = spread(pio_user)
    return d


def test_a_calibrate_run_becomes_a_profile_that_reads_back(tmp_path):
    cal, prov = calibrated(result_doc())
    assert abs(cal.costs.exit_entry - EXIT) <= EXIT * 0.01
    assert abs(cal.costs.ipi - DELIVERY) <= EXIT * 0.02 and cal.costs.nmi == cal.costs.ipi
    assert prov["accel"] == "tcg" and prov["host_cpu"] == "Test CPU" and prov["tsc_khz"] == KHZ
    assert prov["samples"] == {"cpuid": 64, "pio-user": 64, "hlt": 64, "dev-msi": 64}
    text, table = profile_text(result_doc())
    path = tmp_path / "host.yaml"
    path.write_text(text)
    back, back_prov = load_host_profile(path)
    assert back.costs == cal.costs and back.measured == cal.measured and back_prov["qemu"] == "QEMU 10.0.2"
    assert "exit_entry" in table and "tail" in table


def test_a_run_the_model_did_not_predict_or_on_a_busy_host_cannot_calibrate():
    with pytest.raises(CalibrationError, match="paths are not the model's.*cpuid: predicted 64"):
        calibrated(result_doc(msr_extra=1))
    with pytest.raises(CalibrationError, match="load was 5.0..5.0 on 2 CPUs"):
        calibrated(result_doc(load=5.0))


def test_a_later_op_no_slower_than_the_path_it_adds_to_is_a_host_that_sped_up():
    """pio-user's whole iteration below cpuid's round trip: the userspace exit 'costs' 0."""
    calibrated(result_doc(pio_user=EXIT + 20_000))
    with pytest.raises(SpeedChanged, match=r"userspace \(from pio-user \(64 samples\)\) measured 0 cycles at p50: "
                       r"the host's speed changed .*calibrate on a quiet host"):
        calibrated(result_doc(pio_user=EXIT * 9 // 10))


@pytest.mark.parametrize("docs, code, attempts_kept", [
    ([dict(pio_user=EXIT // 2), dict()], 0, 1),                          # the second attempt is steady
    ([dict(pio_user=EXIT // 2)] * 3, 2, 2),                              # three unsteady: ERROR
    ([dict(load=5.0), dict()], 2, 0)])                                   # busy: not measured again
def test_hil_calibrate_measures_again_while_the_host_speed_changes(tmp_path, monkeypatch, capsys, docs, code,
                                                                    attempts_kept):
    from hil import cli
    runs = iter(docs)

    def fake_run(args):
        out = Path(args.out)
        out.mkdir(parents=True)
        (out / "result.json").write_text(json.dumps(result_doc(**next(runs))))
        return 0

    monkeypatch.setattr(cli, "cmd_run", fake_run)
    profile, out = tmp_path / "lab.yaml", tmp_path / "cal"
    assert cli.main(["calibrate", "-o", str(profile), "--out", str(out)]) == code
    assert profile.exists() is (code == 0)
    kept = sorted(p.name for p in tmp_path.glob("cal.refused-*"))
    assert kept == [f"cal.refused-{i + 1}" for i in range(attempts_kept)]
    err = capsys.readouterr().err
    assert err.count("refused, measuring again") == attempts_kept
    assert ("3 attempts" in err) is (attempts_kept == 2)


def test_the_cli_keeps_an_existing_profile_unless_forced(tmp_path):
    import subprocess
    import sys
    from pathlib import Path
    kept = tmp_path / "lab.yaml"
    kept.write_text("cycles: {exit_entry: 1}\n")
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-m", "hil.cli", "calibrate", "-o", str(kept)], cwd=root,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and f"{kept} exists (--force to replace it)" in proc.stderr
    assert kept.read_text() == "cycles: {exit_entry: 1}\n"
