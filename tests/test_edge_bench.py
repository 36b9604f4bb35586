"""Bench mode: machine and software facts, rounds, latency by query length, --out, --ef-curve and bench compare."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from edge import bench, machine
from edge.bench import STAGES, TOKEN_BUCKETS, bucket_label
from edge.bench_compare import compare_reports, format_comparison, load_report, within_spread
from edge.cli import main
from edge.collection import Collection
from edge.encoder import QueryEncoder
from edge.errors import BadInput
from edge.hybrid import fusion_depth
from edge.search import Searcher

X86_CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
physical id\t: 0
core id\t\t: 0
flags\t\t: fpu sse2 avx avx2 avx512f avx512vnni amx_tile amx_int8

processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8480+
physical id\t: 0
core id\t\t: 0
flags\t\t: fpu sse2 avx avx2 avx512f avx512vnni amx_tile amx_int8

processor\t: 2
model name\t: Intel(R) Xeon(R) Platinum 8480+
physical id\t: 0
core id\t\t: 1
flags\t\t: fpu sse2 avx avx2 avx512f avx512vnni amx_tile amx_int8
"""

ARM_CPUINFO = """processor\t: 0
BogoMIPS\t: 50.00
Features\t: fp asimd evtstrm aes asimddp i8mm
CPU implementer\t: 0x41
"""


# --------------------------------------------------------------------------------------------------- machine


def test_parse_cpuinfo_x86_counts_physical_cores_and_reads_both_vnni_spellings() -> None:
    parsed = machine.parse_cpuinfo(X86_CPUINFO)
    assert parsed["model"] == "Intel(R) Xeon(R) Platinum 8480+"
    assert parsed["physical_cores"] == 2  # three logical CPUs on two cores (hyper-threads)
    isa = machine.isa_support(parsed["flags"])
    assert isa["avx2"] and isa["avx512f"] and isa["avx512_vnni"] and isa["amx_tile"] and isa["amx_int8"]
    assert isa["avx_vnni"] is False and isa["i8mm"] is False


def test_parse_cpuinfo_arm_and_unknown_flags() -> None:
    parsed = machine.parse_cpuinfo(ARM_CPUINFO)
    isa = machine.isa_support(parsed["flags"])
    assert isa["asimddp"] and isa["i8mm"] and isa["avx2"] is False
    assert parsed["model"] is None and parsed["physical_cores"] is None
    # No flags line at all: unknown, which is not the same as absent.
    assert set(machine.isa_support(None).values()) == {None}
    assert machine.parse_meminfo_mb("MemTotal:       24684096 kB\nMemFree: 1 kB\n") == 24105
    assert machine.parse_meminfo_mb("garbage") is None


def test_machine_info_keys_and_types() -> None:
    info = machine.machine_info()
    assert set(info) == {"cpu_model", "architecture", "logical_cpus", "physical_cores", "usable_cpus", "isa",
                         "memory_total_mb", "os", "load_average"}
    assert set(info["isa"]) == set(machine.ISA_FLAGS)
    assert all(value is None or isinstance(value, bool) for value in info["isa"].values())
    assert isinstance(info["logical_cpus"], int) and info["logical_cpus"] >= 1
    assert isinstance(info["os"], str) and info["os"]
    for key in ("physical_cores", "usable_cpus", "memory_total_mb"):
        assert info[key] is None or (isinstance(info[key], int) and info[key] >= 1)
    assert info["cpu_model"] is None or isinstance(info["cpu_model"], str)
    json.dumps(info)


def test_machine_info_without_proc_files_does_not_fail(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # As on macOS or Windows: no /proc. Facts that cannot be read become None (or the stdlib's answer).
    monkeypatch.setattr(machine, "CPUINFO", tmp_path / "no-cpuinfo")
    monkeypatch.setattr(machine, "MEMINFO", tmp_path / "no-meminfo")
    monkeypatch.setattr(machine.platform, "processor", lambda: "")
    info = machine.machine_info()
    assert info["cpu_model"] is None and info["physical_cores"] is None
    assert set(info["isa"].values()) == {None}
    assert info["memory_total_mb"] is None or info["memory_total_mb"] > 0  # os.sysconf where it exists


def test_software_info_names_every_version() -> None:
    info = machine.software_info()
    assert info["runner"] == "python"
    for name in ("care_edge", "python", *machine.SOFTWARE_PACKAGES):
        assert isinstance(info[name], str) and info[name][0].isdigit(), (name, info[name])
    # A module without __version__ falls back to the package metadata; without either it is None, not an error.
    assert machine.software_info({"onnxruntime": object()})["onnxruntime"] == info["onnxruntime"]
    assert machine._package_version(object(), "no-such-package-of-care-edge") is None


# --------------------------------------------------------------------------------------------------- bench


def test_bucket_labels_cover_every_length() -> None:
    assert [bucket_label(n) for n in (1, 8, 9, 16, 17, 64, 65, 500)] == [
        "1-8", "1-8", "9-16", "9-16", "17-32", "33-64", "65-128", "129+"]
    assert TOKEN_BUCKETS[-1][1] is None


@pytest.fixture()
def searcher(tiny) -> Searcher:
    return Searcher(Collection(tiny.collection), QueryEncoder(tiny.encoder))


def test_run_bench_rounds_buckets_and_context(searcher: Searcher, tiny) -> None:
    report = bench.run_bench(searcher, tiny.bench_queries, threads=1, open_ms=1.0, rounds=2)
    assert report["rounds"] == 2
    assert set(report["round_p50_ms"]) == {"end_to_end", *STAGES}
    assert all(len(values) == 2 for values in report["round_p50_ms"].values())
    low, high = min(report["round_p50_ms"]["end_to_end"]), max(report["round_p50_ms"]["end_to_end"])
    assert low <= report["end_to_end_ms"]["p95"] and high > 0
    assert report["round_spread_pct"]["end_to_end"] >= 0
    buckets = report["by_query_tokens"]
    assert sum(bucket["n_queries"] for bucket in buckets.values()) == len(tiny.bench_queries)
    counts = searcher.encoder.token_counts(tiny.bench_queries)
    assert set(buckets) == {bucket_label(count) for count in counts}
    assert report["truncated_queries"] == 0 and report["index"]["expansion_search"] == searcher.collection.index.expansion_search
    assert report["index"]["sha256"] == bench.artifact_digest(searcher.collection.manifest)
    assert report["encoder"]["files_sha256"]["model.onnx"] == searcher.encoder.manifest["files"]["model.onnx"]["sha256"]
    assert report["machine"]["logical_cpus"] >= 1 and report["software"]["runner"] == "python"


def test_token_counts_include_the_prompt_and_stop_at_max_tokens(searcher: Searcher) -> None:
    encoder = searcher.encoder
    short, long = encoder.token_counts(["fever", "fever " * 1000])
    assert 1 <= short < long == encoder.max_tokens


def test_ef_curve_recall_grows_and_the_collection_keeps_its_expansion(searcher: Searcher, tiny) -> None:
    shipped = searcher.collection.index.expansion_search
    report = bench.ef_curve(searcher, tiny.bench_queries, [1, 64], rounds=1)
    rows = report["ef_curve"]
    assert [row["expansion_search"] for row in rows] == [1, 64]
    assert rows[1]["recall_at_10"] == 1.0  # 64 >= the tiny collection's size in practice: exhaustive
    assert rows[0]["recall_at_10"] <= rows[1]["recall_at_10"]
    assert report["lowest_expansion_at_target"] in (1, 64)
    assert searcher.collection.index.expansion_search == shipped
    hybrid = bench.ef_curve(searcher, tiny.bench_queries, [64], mode="hybrid", rounds=1)
    assert hybrid["depth"] == fusion_depth(10) and hybrid["ef_curve"][0]["hybrid_recall_at_10"] == 1.0
    assert "recall_at_depth" in hybrid["ef_curve"][0]


def test_parse_expansions() -> None:
    assert bench.parse_expansions("64, 16,16,32") == [16, 32, 64]
    for bad in ("", "0,16", "a,b", "1.5", "16,99999999"):
        with pytest.raises(BadInput, match="--ef-curve"):
            bench.parse_expansions(bad)


def test_bench_out_writes_the_json_it_prints(run_cli, tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    result = run_cli("bench", "--json", "--threads", "1", "--rounds", "2", "--out", out)
    assert result.returncode == 0, result.stderr
    written = json.loads(out.read_text(encoding="utf-8"))
    assert written == result.json()
    assert written["rounds"] == 2 and written["software"]["runner"] == "python"
    assert list(tmp_path.iterdir()) == [out]  # no temp file left behind
    run_cli("bench", "--out", tmp_path / "missing" / "r.json").assert_error(2, "--out", "does not exist")
    run_cli("bench", "--rounds", "0").assert_error(2, "--rounds")


def test_bench_ef_curve_on_the_command_line(run_cli, tmp_path: Path) -> None:
    out = tmp_path / "curve.json"
    result = run_cli("bench", "--ef-curve", "8,64", "--rounds", "1", "--out", out)
    assert result.returncode == 0, result.stderr
    assert "lowest expansion_search" in result.stdout
    assert [row["expansion_search"] for row in json.loads(out.read_text())["ef_curve"]] == [8, 64]
    run_cli("bench", "--ef-curve", "x").assert_error(2, "--ef-curve")
    # A curve is not a latency report: compare refuses it.
    run_cli("bench", "compare", out, out).assert_error(2, "ef-curve")


# --------------------------------------------------------------------------------------------------- compare


def _report(end_to_end_rounds: list[float], encode_rounds: list[float], **changes: Any) -> dict[str, Any]:
    stages = {stage: {"p50": 0.5, "p95": 1.0, "p99": 1.5} for stage in STAGES}
    stages["lexical"] = {"p50": 0.0, "p95": 0.0, "p99": 0.0}
    stages["encode"] = {"p50": sorted(encode_rounds)[len(encode_rounds) // 2], "p95": 9.0, "p99": 9.5}
    report: dict[str, Any] = {
        "index": {"name": "cmed-zh", "sha256": "a" * 64, "expansion_search": 256},
        "encoder": {"name": "care", "sha256": "b" * 64},
        "n_queries": 200, "k": 10, "mode": "dense", "intra_op_threads": 1,
        "end_to_end_ms": {"p50": sorted(end_to_end_rounds)[len(end_to_end_rounds) // 2], "p95": 20.0, "p99": 30.0},
        "stages_ms": stages,
        "qps_1_thread": 100.0, "qps_n_threads": 150.0, "recall_at_10": 0.99, "peak_rss_mb": 200.0,
        "rounds": len(end_to_end_rounds),
        "round_p50_ms": {"end_to_end": end_to_end_rounds, "encode": encode_rounds,
                         **{stage: [0.5] * len(end_to_end_rounds) for stage in ("tokenize", "search", "fetch")},
                         "lexical": [0.0] * len(end_to_end_rounds)},
        "by_query_tokens": {"9-16": {"n_queries": 90, "end_to_end_ms": {"p50": 8.0, "p95": 9.0, "p99": 9.5}}},
        "machine": {"cpu_model": "AMD EPYC", "logical_cpus": 2, "isa": {"avx2": True, "amx_tile": False}},
        "software": {"runner": "python", "python": "3.11.7", "onnxruntime": "1.32.0"},
    }
    report.update(changes)
    return report


def test_within_spread() -> None:
    assert within_spread((1.0, 2.0), (1.5, 3.0)) is True
    assert within_spread((1.0, 2.0), (2.0, 3.0)) is True  # touching ranges overlap
    assert within_spread((1.0, 2.0), (2.1, 3.0)) is False
    assert within_spread(None, (1.0, 2.0)) is None


def test_compare_ratios_and_spread() -> None:
    first = _report([10.0, 10.5, 11.0], [6.0, 6.2, 6.4])
    faster = _report([5.0, 5.25, 5.4], [6.1, 6.3, 6.5], machine={"cpu_model": "Intel Xeon", "logical_cpus": 8,
                                                                  "isa": {"avx2": True, "amx_tile": True}})
    comparison = compare_reports([first, faster], ["a.json", "b.json"])
    rows = {row["metric"]: row for row in comparison["rows"]}
    assert "lexical" not in rows  # dense reports: no lexical stage
    end_to_end = rows["end_to_end"]["values"]
    assert end_to_end[0]["ratio"] == 1.0 and end_to_end[0]["within_spread"] is None
    assert end_to_end[1]["ratio"] == pytest.approx(5.25 / 10.5, abs=1e-3)
    assert end_to_end[1]["within_spread"] is False and end_to_end[1]["round_range"] == [5.0, 5.4]
    assert rows["encode"]["values"][1]["within_spread"] is True
    assert rows["end_to_end 9-16 tokens"]["values"][1]["ratio"] == 1.0
    assert comparison["context"]["cpu_model"] == ["AMD EPYC", "Intel Xeon"]
    assert comparison["context"]["isa"] == ["avx2", "avx2 amx_tile"]
    assert comparison["notes"] == []
    text = format_comparison(comparison)
    assert "5.25 [5-5.4] x0.50 !" in text and "x1.02 ~" in text and "Intel Xeon" in text


def test_compare_notes_a_different_workload_and_missing_rounds() -> None:
    first = _report([10.0, 11.0], [6.0, 6.4])
    old = copy.deepcopy(_report([10.0], [6.0], mode="hybrid"))
    del old["round_p50_ms"], old["rounds"], old["machine"], old["software"], old["by_query_tokens"]
    comparison = compare_reports([first, old], ["new.json", "old.json"])
    assert any("mode" in note for note in comparison["notes"])
    assert any("no spread" in note for note in comparison["notes"])
    assert comparison["rows"][0]["values"][1]["within_spread"] is None
    assert comparison["context"]["cpu_model"] == ["AMD EPYC", None]
    format_comparison(comparison)


def test_compare_on_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(_report([10.0, 11.0], [6.0, 6.4])), encoding="utf-8")
    b.write_text(json.dumps(_report([12.0, 13.0], [6.1, 6.3])), encoding="utf-8")
    assert main(["bench", "compare", str(a), str(b), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["reports"] == [str(a), str(b)]
    assert payload["rows"][0]["metric"] == "end_to_end" and payload["rows"][0]["values"][1]["within_spread"] is False
    assert main(["bench", "compare", str(a), str(b)]) == 0
    assert "end_to_end (ms p50)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("content", "fragment"),
    [(None, "cannot read"), ("{not json", "not JSON"), ('{"mode": "dense"}', "not a care-edge bench report"),
     ('[1, 2]', "not a care-edge bench report"),
     ('{"end_to_end_ms": {"p50": "fast"}, "stages_ms": {}}', "not a care-edge bench report"),
     ("folder", "not a regular file"), (b"\xff\xfe{}", "not UTF-8")],
)
def test_compare_rejects_bad_files_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               content: str | bytes | None, fragment: str) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps(_report([10.0, 11.0], [6.0, 6.4])), encoding="utf-8")
    bad = tmp_path / "bad.json"
    if content == "folder":
        bad.mkdir()
    elif isinstance(content, bytes):
        bad.write_bytes(content)
    elif content is not None:
        bad.write_text(content, encoding="utf-8")
    with pytest.raises(BadInput, match=fragment):
        load_report(bad)
    assert main(["bench", "compare", str(good), str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0] and str(bad) in err[0]


def test_compare_needs_two_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps(_report([10.0, 11.0], [6.0, 6.4])), encoding="utf-8")
    assert main(["bench", "compare", str(good)]) == 2
    assert "at least two" in capsys.readouterr().err
    assert main(["bench", "compare"]) == 2
