"""``shoprank report`` rebuilds a comparison's tables and plots from its sessions."""

from __future__ import annotations

from agents.baselines import baseline_factory
from envs import WorldConfig, static_config
from experiments.evaluate import evaluate_agents
from experiments.report import main


def test_report_rebuilds_summary_from_sessions(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2
    assert capsys.readouterr().err == (f"shoprank report: error: nothing to report in {tmp_path} (no sessions.csv, "
                                       "no TensorBoard events)\n")
    assert main([str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err == f"shoprank report: error: no such folder: {tmp_path / 'nope'}\n"
    config = static_config(world=WorldConfig(text_encoder="hashing", n_products=300))
    sessions = evaluate_agents({n: baseline_factory(n) for n in ("random", "retriever")}, "ShopRankStatic-v0",
                               config, seeds=[0, 1], n_sessions=5, progress=False)
    sessions.to_csv(tmp_path / "sessions.csv", index=False)
    assert main([str(tmp_path)]) == 0
    for name in ("summary.csv", "paired.csv", "summary.md", "metrics.png"):
        assert (tmp_path / name).is_file()
    header = (tmp_path / "summary.csv").read_text().splitlines()[0]
    assert header == "agent,metric,mean,ci95_low,ci95_high,n"
