"""Train SqueezeNet (simple bypass) on CIFAR-10, classify images with it, serve it, export it:

    python main.py -e 300 -b 64 -g 0 -lr 0.1
    python main.py predict -m RUN/model.npz cat.jpg dog.png [--top 3] [--json]
    python main.py serve -m RUN/model.npz [--port 8000]     (a web page at /)
    python main.py export -m RUN/model.npz -o model.onnx    (then predict or serve model.onnx)
    python main.py --dataset folder --data ROOT              (ROOT/train/<class>/, ROOT/test/)
    python main.py summarize RUN [RUN ...] [--target 0.9] [--json | --markdown]

Any registered architecture or import path trains, predicts and serves the same way
(``--arch package.module:Factory``); see trainer.registry.
"""

import logging
import sys

import numpy as np

import inference
import serving
import trainer
from trainer import distributed, registry, signals, summary

INTERRUPTED = 130  # the shell's status for Ctrl-C (128 + SIGINT)
TERMINATED = 143  # 128 + SIGTERM


Terminated = signals.Terminated  # SIGTERM arrived: stop like Ctrl-C (resumable)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    commands = {'predict': predict, 'serve': serve, 'export': export, 'summarize': summarize}
    if argv and argv[0] in commands:
        return commands[argv[0]](argv[1:])
    options = trainer.parse_args(argv, trainer.build_parser(__doc__))
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    # Ctrl-C and SIGTERM stop between steps or batches, never inside a compiled kernel
    with signals.stop_at_safe_points(), np.errstate(all='ignore'):  # NaN: one line, no warnings
        try:
            trainer.set_seed(options.seed)  # before building the model: seeds its weights
            with distributed.abort_all_on_error(options.communicator):  # under MPI: every rank
                data = trainer.load_dataset(options.dataset, options.data, options.skip_bad_images)
                arch = options.arch or registry.DEFAULT_ARCH
                model = registry.build(arch, data.n_classes, **options.model_options)
                trainer.train(model, options, data, command=['main.py', *argv])
            signals.safe_point()  # a signal noted after the last step
        except trainer.UserError as error:
            return _fail(error)
        except KeyboardInterrupt:
            return _fail('interrupted; rerun the same command to resume', INTERRUPTED)
        except Terminated:
            return _fail('terminated; rerun the same command to resume', TERMINATED)
    return 0


def predict(argv: list[str]) -> int:
    """Print the top classes of each image; exit status 1 if any input failed."""
    args = inference.build_predict_parser('main.py predict').parse_args(argv)
    try:
        predictor = inference.load_from_args(args)
    except trainer.UserError as error:
        return _fail(error)
    results = predictor.classify_files(args.images, args.top)
    for result in results:
        if result.error is not None:
            print(f'error: {result.source}: {result.error}', file=sys.stderr)
        elif not args.json:
            print(inference.format_text(result))
    if args.json:
        print(inference.format_json(results))
    return 0 if all(result.error is None for result in results) else 1


def serve(argv: list[str]) -> int:
    """Answer POST /predict and GET /health until SIGTERM or SIGINT, then drain; exit 0."""
    args = serving.build_parser('main.py serve').parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(message)s')
    try:
        predictor = inference.load_from_args(args)
        server = serving.make_server(
            predictor,
            args.host,
            args.port,
            args.max_bytes,
            args.top,
            max_pixels=args.max_pixels,
            workers=args.workers,
            timeout=args.timeout,
        )
    except trainer.UserError as error:
        return _fail(error)
    except KeyboardInterrupt:  # Ctrl-C while the model loads: nothing was served yet
        return _fail('interrupted', INTERRUPTED)
    serving.run(server)
    return 0


def export(argv: list[str]) -> int:
    """Write an ONNX file of a trained model, checked against Chainer's logits first."""
    args = inference.build_export_parser('main.py export').parse_args(argv)
    try:
        result = inference.export_onnx(
            args.model, args.output, args.arch, args.dataset, args.preset
        )
    except trainer.UserError as error:
        return _fail(error)
    info = result.info
    print(
        f'{result.path}: {info.arch}, {len(info.labels)} classes ({info.dataset}), preset '
        f'{info.preset}; ONNX Runtime matches Chainer within {max(result.errors.values()):.2g} '
        f'(allowed {result.allowed:.2g}) at batch {", ".join(map(str, result.errors))}'
    )
    return 0


def summarize(argv: list[str]) -> int:
    """Print each run's accuracies and timings, and their mean and spread over the runs."""
    args = summary.build_parser('main.py summarize').parse_args(argv)
    try:
        result = summary.summarize(args.runs, args.target)
    except trainer.UserError as error:
        return _fail(error)
    formats = {'json': summary.format_json, 'markdown': summary.format_markdown}
    print(formats.get(args.format, summary.format_text)(result))
    return 0


def _fail(error: object, status: int = 1) -> int:
    print(f'error: {error}', file=sys.stderr)
    return status


if __name__ == '__main__':
    sys.exit(main())
