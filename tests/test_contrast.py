"""shoprank contrast: one agent across two compare runs, paired on the same shoppers."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from encoders.errors import ConfigError
from experiments.contrast import AUC, contrast, final_differences, main


def _run(folder, shift: float, curve_shift: float, aux: bool):
    folder.mkdir()
    rng = np.random.default_rng(0)   # the same shoppers in both runs: the same base numbers
    rows = []
    for seed in range(5):
        for session in range(4):
            base = float(rng.normal(10.0, 2.0))
            rows.append({"agent": "ppo_scratch", "seed": seed, "session": session, "reset_seed": 100 * seed + session,
                         "reward": base + shift + 0.1 * seed, "clicks": base / 2})
            rows.append({"agent": "retriever", "seed": seed, "session": session, "reset_seed": 100 * seed + session,
                         "reward": base, "clicks": base / 3})
    pd.DataFrame(rows).to_csv(folder / "sessions.csv", index=False)
    curve = [{"agent": "ppo_scratch", "seed": seed, "env_steps": steps, "wall_s": steps / 100.0,
              "reward": 8.0 + steps / 1000 + seed * 0.3 + curve_shift * (steps < 3000)}
             for seed in range(5) for steps in (0, 2000, 4000)]
    pd.DataFrame(curve).to_csv(folder / "learning_curves.csv", index=False)
    pd.DataFrame([{"agent": "retriever", "seed": s, "reward": 7.5} for s in range(5)]).to_csv(
        folder / "learning_curve_references.csv", index=False)
    (folder / "compare_config.json").write_text(json.dumps({"agent_overrides": ["aux_heads=true"] if aux else [],
                                                            "seeds": [0, 1, 2, 3, 4]}))
    return folder


def test_paired_final_and_curve_differences(tmp_path):
    a = _run(tmp_path / "a", 0.0, 0.0, False)
    b = _run(tmp_path / "b", 0.5, 0.3, True)
    paths = contrast([a, b], ["off", "aux"], "ppo_scratch", tmp_path / "out")
    final = pd.read_csv(paths["paired"]).set_index("metric")
    assert final.loc["reward", "mean_diff"] == pytest.approx(0.5)
    assert final.loc["reward", "ci95_high"] - final.loc["reward", "ci95_low"] == pytest.approx(0.0, abs=1e-9)  # paired
    assert final.loc["clicks", "mean_diff"] == pytest.approx(0.0)
    curve = pd.read_csv(paths["curve_paired"]).set_index("env_steps")
    assert curve.loc["0", "mean_diff"] == pytest.approx(0.3) and curve.loc["4000", "mean_diff"] == pytest.approx(0.0)
    assert curve.loc[AUC, "mean_diff"] == pytest.approx(0.2)            # (0.3 + 0.3 + 0) / 3 points
    text = paths["markdown"].read_text()
    assert "`agent_overrides`: [] → ['aux_heads=true']" in text and paths["plot"].stat().st_size > 5000


def test_messages(tmp_path, capsys):
    a = _run(tmp_path / "a", 0.0, 0.0, False)
    b = _run(tmp_path / "b", 0.5, 0.0, True)
    with pytest.raises(ConfigError, match=re.escape(f"agent 'dqn' is not in {a / 'sessions.csv'} (agents there: "
                                                    "['ppo_scratch', 'retriever']).")):
        final_differences([a, b], ["off", "aux"], "dqn")
    frame = pd.read_csv(b / "sessions.csv")
    frame["reset_seed"] += 1
    frame.to_csv(b / "sessions.csv", index=False)
    with pytest.raises(ConfigError, match=re.escape("the two runs did not evaluate the same seeds and sessions")):
        final_differences([a, b], ["off", "aux"], "ppo_scratch")
    assert main(["--runs", str(a), str(tmp_path / "missing"), "--agent", "ppo_scratch", "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.strip() == (f"shoprank contrast: error: {tmp_path / 'missing' / 'sessions.csv'} not "
                                               "found: is " + str(tmp_path / "missing") + " a finished `shoprank compare` run folder?")
