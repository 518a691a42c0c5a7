"""Train SqueezeNet (simple bypass) on CIFAR-10: python main.py -e 300 -b 64 -g 0 -lr 0.1

Classify images: python main.py predict -m model.npz cat.jpg dog.png [--top 3] [--json]
Serve the model over HTTP: python main.py serve -m model.npz [--host 127.0.0.1] [--port 8000]
"""

import logging
import sys

import trainer
import trainer.predict
import trainer.serve
from squeeze_net import SqueezeNet


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in ('predict', 'serve'):
        return {'predict': predict, 'serve': serve}[argv[0]](argv[1:])
    args = trainer.parse_args(argv, trainer.build_parser(__doc__))
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    trainer.set_seed(args.seed)
    try:
        trainer.train(SqueezeNet(trainer.N_CLASSES[args.dataset]), args)
    except (
        trainer.DataError,
        trainer.DeviceError,
        trainer.NonFiniteLossError,
        trainer.predict.ModelFileError,
    ) as error:
        print(f'error: {error}', file=sys.stderr)
        return 1
    return 0


def predict(argv: list[str]) -> int:
    """Print the top classes of each image; exit status 1 if any input failed."""
    args = trainer.predict.build_parser('main.py predict').parse_args(argv)
    try:
        predictor = trainer.predict.load_predictor(
            SqueezeNet, args.model, args.dataset, args.preset, args.gpu
        )
    except (trainer.predict.ModelFileError, trainer.DeviceError) as error:
        print(f'error: {error}', file=sys.stderr)
        return 1
    results = predictor.classify_files(args.images, args.top)
    for result in results:
        if result.error is not None:
            print(f'error: {result.source}: {result.error}', file=sys.stderr)
        elif not args.json:
            print(trainer.predict.format_text(result))
    if args.json:
        print(trainer.predict.format_json(results))
    return 0 if all(result.error is None for result in results) else 1


def serve(argv: list[str]) -> int:
    """Answer POST /predict and GET /health until interrupted."""
    args = trainer.serve.build_parser('main.py serve').parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(message)s')
    try:
        predictor = trainer.predict.load_predictor(
            SqueezeNet, args.model, args.dataset, args.preset, args.gpu
        )
        server = trainer.serve.make_server(
            predictor, args.host, args.port, args.max_bytes, args.top
        )
    except (trainer.predict.ModelFileError, trainer.DeviceError, trainer.serve.ServeError) as error:
        print(f'error: {error}', file=sys.stderr)
        return 1
    trainer.serve.run(server)
    return 0


if __name__ == '__main__':
    sys.exit(main())
