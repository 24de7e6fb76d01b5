"""``dense-nas export``: the chosen trial's network as a checked file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from dense_nas.cli._args import FORMAT_CHOICES, choice, choice_args, study_args


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "export",
        help="export the best trial's network and check the file",
        description="Write the chosen trial's trained network to a file, then run the file "
        "on a batch and compare its outputs with the module's (exit 1 if they differ).",
    )
    study_args(p)
    p.add_argument(
        "--format",
        required=True,
        choices=FORMAT_CHOICES,
        help="onnx (onnxruntime), torchscript, state-dict (of dense_nas.DenseNet) "
        "or exported-program (torch.export)",
    )
    p.add_argument("--output", required=True, type=Path, help="file to write")
    choice_args(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from dense_nas.paths import check_output_file
    from dense_nas.results.export import ExportMismatch, export_checked
    from dense_nas.results.loading import find_trial, load_trial, study_image_size

    check_output_file(args.output, "output")  # before the study is read and a network loaded
    study, trial = find_trial(args.storage, args.study_name, **choice(args))
    module = load_trial(study, trial)
    try:
        difference = export_checked(module, args.output, args.format, study_image_size(study))
    except ExportMismatch as err:
        print(f"dense-nas: error: {err}", file=sys.stderr)
        return 1
    print(
        f"wrote {args.output} ({args.format}) of trial {trial.number}; its outputs match "
        f"the module's (largest difference {difference:.2g})"
    )
    return 0
