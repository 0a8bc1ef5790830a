"""Benchmark: how the initialisation's accuracy grows with the length of pretraining.

Pretrains one autoencoder with a preset's settings and resumes it from its own checkpoint
through longer and longer stages (40, 100, 200, ... epochs). At a constant learning rate the
batch order depends on (seed, epoch) alone, so the model at each stage is the model a run of
that many epochs would have trained. After each stage it redoes the initialisation (the
preset's UMAP + Gaussian mixture, as ``init_clusters`` does) and records ACC, NMI, the
largest cluster and the embedding's 10-nearest-neighbour label agreement. This tells whether
N2D's 1,000 pretraining epochs, against the `default` preset's 40, explain its accuracy on a
data set. Labels only score; nothing here feeds back into training.

    .venv/bin/python bench/pretrain_length.py --dataset DIR --seed 0 --stages 40 100 200 400 \\
        --work-dir W
    .venv/bin/python bench/pretrain_length.py --dataset DIR --seed 0 --stages 400 \\
        --init-seeds 0 1 2 --work-dir W    # the same model, three initialisations

Appends one record per stage and initialisation seed to ``bench/results/pretrain_length.json``.
"""

import argparse
import json
import time
from pathlib import Path

from init_structure import neighbour_agreement, partition_scores
from records import append_record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, help="data.dataset: a name, path or URI")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stages", nargs="+", type=int, default=[40, 100, 200, 400],
                        help="epochs at which to stop and redo the initialisation (ascending)")
    parser.add_argument("--init-seeds", nargs="+", type=int,
                        help="seeds of the initialisation after each stage (default: --seed)")
    parser.add_argument("--work-dir", type=Path, required=True,
                        help="the checkpoint goes here; a second call resumes from it")
    args = parser.parse_args()
    if args.stages != sorted(set(args.stages)):
        parser.error("--stages must be ascending and distinct")

    import numpy as np

    from dec_lib.config import preset
    from dec_lib.core.phases import pretrain
    from dec_lib.data.datasets import load_dataset
    from dec_lib.model.autoencoder import embed, encoder_of
    from dec_lib.model.initialisation import init_centres

    base = preset(args.preset)
    if base.pretrain.schedule != "constant":
        parser.error("stages equal separate runs only at a constant learning rate")
    dataset = load_dataset(args.dataset)
    n_clusters = base.dec.n_clusters
    for epochs in args.stages:
        config = base.with_overrides({"pretrain.epochs": epochs, "pretrain.min_steps": 0,
                                      "pretrain.checkpoint_every": 10,
                                      "pretrain.checkpoint_min_seconds": 0.0})
        started = time.perf_counter()
        pretrained = pretrain(dataset.x, config.autoencoder, config.pretrain, seed=args.seed,
                              image_shape=dataset.image_shape,
                              checkpoint_dir=args.work_dir / "checkpoint")
        pretrain_seconds = time.perf_counter() - started
        if pretrained.resumed_from_epoch > epochs:
            parser.error(f"the checkpoint in {args.work_dir} is {pretrained.resumed_from_epoch} "
                         f"epochs in, past the stage of {epochs}")
        z = np.asarray(embed(encoder_of(pretrained.autoencoder), dataset.x), dtype=np.float64)
        agreement = neighbour_agreement(z, dataset.y)
        for init_seed in args.init_seeds or [args.seed]:
            started = time.perf_counter()
            init = init_centres(z, n_clusters, config.init, seed=init_seed)
            record = append_record(
                "pretrain_length", preset=args.preset, dataset=args.dataset, seed=args.seed,
                init_seed=init_seed, epochs=epochs,
                resumed_from_epoch=pretrained.resumed_from_epoch,
                final_loss=round(pretrained.final_loss, 6),
                **partition_scores(dataset.y, init.labels, n_clusters),
                neighbour_agreement=round(agreement, 4),
                pretrain_seconds=round(pretrain_seconds),
                init_seconds=round(time.perf_counter() - started))
            print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
