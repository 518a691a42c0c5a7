"""Train SqueezeNet (simple bypass) on CIFAR-10: python main.py -e 300 -b 64 -g 0 -lr 0.1"""

import logging
import sys

import trainer
from squeeze_net import SqueezeNet


def main(argv: list[str] | None = None) -> int:
    args = trainer.parse_args(argv, trainer.build_parser(__doc__))
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    trainer.set_seed(args.seed)
    try:
        trainer.train(SqueezeNet(trainer.N_CLASSES[args.dataset]), args)
    except (trainer.DataError, trainer.DeviceError, trainer.NonFiniteLossError) as error:
        print(f'error: {error}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
