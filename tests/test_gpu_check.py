"""The pieces of ``benchmarks/gpu_check.py`` on a CPU, tiny: finding the CUDA tests, reading
pytest's JUnit XML, step times from fetch marks, and one tiny run of the whole script.

No timing assertions: only structure, pass counts and the end-to-end checks.
"""
from __future__ import annotations

import importlib.util
import json
import sys
import textwrap
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


def _load():
    spec = importlib.util.spec_from_file_location("bench_gpu_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_gpu_check"] = mod
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


gc = _load()


def test_find_cuda_tests_reads_functions_decorators_and_classes(tmp_path):
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "test_a.py").write_text(textwrap.dedent("""
        import pytest, torch

        @pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
        def test_decorated():
            pass

        def test_body():
            if torch.cuda.is_available():
                pass

        def test_plain():
            x = "cudaish"

        class TestGroup:
            def test_method(self):
                torch.zeros(1, device="cuda")

            def test_other(self):
                pass
    """))
    (tests / "helper.py").write_text("import torch\ntorch.cuda.is_available()\n")
    assert gc.find_cuda_tests(tests) == ["tests/test_a.py::test_decorated", "tests/test_a.py::test_body",
                                         "tests/test_a.py::TestGroup::test_method"]


def test_the_suites_cuda_tests_are_found():
    found = gc.find_cuda_tests(ROOT / "tests")
    assert "tests/test_models.py::test_cuda" in found
    assert "tests/test_fairness.py::test_constraint_values_follow_the_logits_device_and_accept_bool_labels" in found
    assert not any("test_gpu_check" in f for f in found)


def test_parse_junit():
    xml = """<testsuites><testsuite>
      <testcase classname="tests.test_m" name="test_a[x]"/>
      <testcase classname="tests.test_m" name="test_b"><failure message="boom">tb</failure></testcase>
      <testcase classname="tests.test_m" name="test_c"><skipped message="needs CUDA"/></testcase>
      <testcase classname="tests.test_m" name="test_d"><error message="fixture"/></testcase>
    </testsuite></testsuites>"""
    rows = gc.parse_junit(xml)
    assert [r["outcome"] for r in rows] == ["passed", "failed", "skipped", "error"]
    assert rows[0]["test"] == "tests.test_m::test_a[x]" and rows[2]["message"] == "needs CUDA"


def test_durations_take_every_per_step_th_mark_after_the_warmup():
    marks = [0.0, 1.0, 3.0, 6.0, 10.0]
    assert gc._durations(marks, 1, 1, False) == [2.0, 3.0, 4.0]
    assert gc._durations(marks, 2, 0, False) == [3.0, 7.0]
    assert gc._durations(marks, 2, 1, False) == [7.0]
    with pytest.raises(ValueError, match="per_step"):
        gc._durations(marks, 0, 0, False)


def test_summarize():
    s = gc.summarize([0.1, 0.2, 0.3, 0.4], batch=8)
    assert s["median_ms"] == pytest.approx(250.0) and s["images_per_s"] == pytest.approx(32.0) and s["n"] == 4
    with pytest.raises(ValueError, match="at least 2"):
        gc.summarize([0.1], batch=8)


def test_timed_batches_mark_every_fetch_of_a_training_loop():
    torch.manual_seed(0)
    model = gc.make_model("cnn", in_shape=(3, 8, 8), width=2, seed=0)
    batches = [(torch.rand(4, 3, 8, 8), torch.randint(0, 2, (4,)), torch.tensor([0, 1, 0, 1])) for _ in range(3)]
    for method, per in (("masked_sgd", 1), ("bifp_alternating", 2), ("bifp_joint", 1), ("bip", 2)):
        out = gc.time_method(method, model, batches, torch.device("cpu"), steps=3, warmup=1)
        assert len(out["wall"]) == 3 and "event" not in out
        assert all(t > 0 for t in out["wall"])
        assert out["forward_per_step"] == per and out["backward_per_step"] == per, method


def test_tiny_run_of_the_whole_script(tmp_path):
    out = tmp_path / "g.json"
    rc = gc.main(["--device", "cpu", "--tiny", "--images", "64", "--image-size", "16", "--batch", "4",
                  "--steps", "2", "--warmup", "0", "--rounds", "1", "--e2e-steps", "2", "--pretrain-epochs", "1",
                  "--skip", "tests", "--source-commit", "abc", "--source-dirty", "false", "--out", str(out)])
    assert rc == 0
    res = json.loads(out.read_text())
    assert res["complete"] and res["passed"] == {"tests": True, "end_to_end": True}
    assert res["provenance"]["source_commit"] == "abc" and res["provenance"]["source_dirty"] is False
    assert len(res["provenance"]["package_sha256"]) == 64 and "CelebA" in res["note"]
    assert set(res["steps"]) == {"resnet10", "mobilenetv2"}
    for model in res["steps"].values():
        assert set(model["methods"]) == set(gc.METHODS)
        assert model["methods"]["masked_sgd"]["ratio_vs_masked_sgd"] == 1.0
        assert model["methods"]["bifp_joint"]["forward_per_step"] == 1
    runs = res["end_to_end"]["runs"]
    assert set(runs) == {"bifp_uns", "bifp_str", "omp_uns"}
    for r in runs.values():
        assert r["passed"] and not r["empty_layers"] and r["min_layer_kept"] >= 1
        assert r["test"]["majority_baseline"] is not None
    assert runs["bifp_uns"]["weight_sparsity"] == pytest.approx(0.79, abs=1e-3)
    assert runs["bifp_str"]["channel_sparsity"] == pytest.approx(0.79, abs=0.02)


def test_empty_layer_and_channel_counts():
    masks = {"a": torch.ones(4, 2), "b": torch.zeros(3, 2)}
    assert gc.empty_layers(masks) == ["b"]
    masks["a"][1] = 0
    assert gc.channel_counts(masks) == (4, 7)


@pytest.mark.parametrize("argv, msg", [(["--steps", "1"], "--steps must be >= 2"),
                                       (["--batch", "0"], "--batch must be >= 1")])
def test_bad_arguments_exit_2(tmp_path, capsys, argv, msg):
    assert gc.main(["--device", "cpu", "--out", str(tmp_path / "x.json"), *argv]) == 2
    assert msg in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_requested_without_cuda_exits_2(tmp_path, capsys):
    assert gc.main(["--device", "cuda", "--out", str(tmp_path / "x.json")]) == 2
    assert "no CUDA device" in capsys.readouterr().err


def test_profile_steps_on_cpu():
    model = gc.make_model("cnn", in_shape=(3, 8, 8), width=2, seed=0)
    batches = [(torch.rand(4, 3, 8, 8), torch.randint(0, 2, (4,)), torch.tensor([0, 1, 0, 1])) for _ in range(2)]
    r = gc.profile_steps("bifp_alternating", model, batches, torch.device("cpu"), steps=3, top=5)
    assert r["gpu_busy_ms_per_step"] is None and r["scalar_reads_per_step"] >= 1
    assert len(r["top_self_cpu"]) == 5 and r["top_self_cpu"][0]["self_cpu_ms"] >= r["top_self_cpu"][-1]["self_cpu_ms"]
