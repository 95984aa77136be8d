"""How well SmolLM2-135M does each task and prompt type: a markdown table.

For every (task, prompt type) it generates ``--n`` prompts (seeded, with the model's
tokenizer), scores the clean prompts at the last position and reports accuracy
(mu > 0) and the mean of mu = logit(answer) - max logit(wrong answers).

    HF_HUB_OFFLINE=1 python scripts/smollm2_task_accuracy.py --n 40
"""

from __future__ import annotations

import argparse
import time

import torch

COMPONENTS = (
    [("ioi", t) for t in ("ABBA", "BABA", "mixed", "passive", "3-person", "letter", "filler")]
    + [("entity_binding", t) for t in ("2-comma", "2-period", "2-comma-colour", "3-comma",
                                       "8-comma", "8-comma-q1", "8-comma-q8")]
    + [("arithmetic", t) for t in ("2-operand", "3-operand", "verbal-addition", "verbal-sum",
                                   "verbal-plus")]
    + [("sequence", t) for t in ("2-gram", "3-gram", "4-gram")]
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--n", type=int, default=40, help="prompts per prompt type")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)

    from auto_circuit.utils.custom_tqdm import tqdm

    import auto_circuit_dcd as dcd
    from auto_circuit_dcd.tasks.dataset import generate_prompts
    from auto_circuit_dcd.tasks.mixture import Component
    from auto_circuit_dcd.tasks.scoring import logit_margins

    start = time.time()
    model = dcd.load_model(args.model)
    tokenizer = model.tokenizer
    rows = []
    for task, prompt_type in tqdm(COMPONENTS):
        prompts, stats = generate_prompts(Component(task, prompt_type), tokenizer, args.n,
                                          args.seed)
        mu = logit_margins(model, tokenizer, prompts)
        rows.append((task, prompt_type, len(prompts), (mu > 0).float().mean().item(),
                     mu.mean().item(), mu.std().item()))
    print(f"\n{args.model}, {args.n} prompts per type (fewer where the pool is smaller), "
          f"seed {args.seed}, {time.time() - start:.0f} s\n")
    print("| task | prompt type | n | accuracy | mean mu | sd mu |")
    print("|---|---|---:|---:|---:|---:|")
    for task, prompt_type, n, acc, mean, sd in rows:
        print(f"| {task} | {prompt_type} | {n} | {acc:.2f} | {mean:.2f} | {sd:.2f} |")


if __name__ == "__main__":
    main()
