"""Train the toy two-task model and write its assets (weights, config, tokenizer, datasets).

    python scripts/train_toy.py                      # the shipped model (seed 2)
    python scripts/train_toy.py --seeds 0 1 2 --out /tmp/toy

Each seed is trained from scratch (one torch thread: bit-identical weights for a seed),
then checked: accuracy >= 98% on both tasks' held-out test splits (IOI on unseen name
pairs) and separable per-example EAP rows (2-means on the mixed training split recovers
the tasks, ARI >= 0.9). The first seed that passes is written; every seed's figures go
into ``config.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

SHIPPED_SEED = 2
ASSETS = Path(__file__).resolve().parents[1] / "auto_circuit_dcd" / "toy" / "assets"


def _eap_ari(state: dict[str, Any], mixed: dict[str, Any]) -> dict[str, float]:
    """KMeans(2) ARI and task-mean cosine of per-example EAP rows on the mixed train split."""
    import numpy as np
    import torch
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    import auto_circuit_dcd as dcd
    from auto_circuit_dcd.model.load import enable_patching_flags
    from auto_circuit_dcd.toy.model import build_model

    model = build_model(init_weights=False)
    model.load_state_dict(state, strict=False)
    model.eval().requires_grad_(False)
    pm, train, _ = dcd.prepare(enable_patching_flags(model), mixed, batch_size=32)
    am = dcd.attribute(pm, train, progress=False)
    is_ioi = np.array([g == "ioi" for g in am.groups])
    labels = KMeans(2, n_init=10, random_state=42).fit_predict(am.to_numpy())
    x = am.scores
    cos = torch.nn.functional.cosine_similarity(x[is_ioi].mean(0), x[~is_ioi].mean(0), 0)
    return {"kmeans2_ari": round(float(adjusted_rand_score(is_ioi, labels)), 4),
            "task_mean_cosine": round(float(cos), 4), "n_examples": int(len(is_ioi)),
            "n_edges": int(x.shape[1])}


def main(argv: Any = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[SHIPPED_SEED])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--dataset-seed", type=int, default=1234)
    parser.add_argument("--out", type=Path, default=ASSETS)
    args = parser.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from auto_circuit_dcd.files import atomic_path, save_tensors, write_text
    from auto_circuit_dcd.toy.datasets import make_datasets
    from auto_circuit_dcd.toy.model import (
        CHECKPOINT_FILE,
        CONFIG_FILE,
        TOKENIZER_FILE,
        architecture,
    )
    from auto_circuit_dcd.toy.tasks import name_pair_split
    from auto_circuit_dcd.toy.train import TrainSettings, accuracy, train_toy_model
    from auto_circuit_dcd.toy.vocab import build_word_tokenizer

    torch.set_num_threads(1)
    train_pairs, test_pairs = name_pair_split()
    datasets = make_datasets(train_pairs, test_pairs, seed=args.dataset_seed)
    tried = []
    for seed in args.seeds:
        model, record = train_toy_model(TrainSettings(seed=seed, steps=args.steps), train_pairs)
        held_out = {task: round(accuracy(model, [p for p in datasets[task]["prompts"]
                                                 if p["split"] == "test"]), 4)
                    for task in ("ioi", "induction")}
        state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()
                 if not k.endswith(("IGNORE", ".mask"))}
        separation = _eap_ari(state, datasets["mixed"])
        passed = min(held_out.values()) >= 0.98 and separation["kmeans2_ari"] >= 0.9
        tried.append({"seed": seed, "train_seconds": record["train_seconds"],
                      "held_out_accuracy": held_out, "eap_separation": separation,
                      "passed": passed})
        print(json.dumps(tried[-1]), flush=True)
        if passed:
            break
    else:
        print("no seed passed the accuracy and separation checks; nothing written",
              file=sys.stderr)
        return 1

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    save_tensors(out / CHECKPOINT_FILE, state)
    with atomic_path(out / TOKENIZER_FILE) as tmp:
        build_word_tokenizer().save(str(tmp))
    for name, data in datasets.items():
        write_text(out / f"{name}.json", json.dumps(data, indent=1) + "\n")
    n_params = sum(v.numel() for k, v in state.items())
    config = {
        "name": "toy-two-task",
        "architecture": architecture(),
        "n_parameters": n_params,
        "seed": tried[-1]["seed"],
        "training": dict(record.items()),
        "held_out_accuracy": tried[-1]["held_out_accuracy"],
        "eap_separation": tried[-1]["eap_separation"],
        "seeds_tried": tried,
        "held_out_name_pairs": [list(p) for p in test_pairs],
        "dataset_seed": args.dataset_seed,
        "torch_version": torch.__version__,
    }
    write_text(out / CONFIG_FILE, json.dumps(config, indent=1) + "\n")
    print(f"wrote {out} (seed {config['seed']}, {n_params} parameters)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
