"""What training and evaluation print: the evaluation bar in images, no escapes when piped."""

import re

import chainer
import numpy as np
from chainer import iterators
from conftest import write_cifar10

import trainer
from squeeze_net import SqueezeNet
from trainer.evaluator import ClassificationEvaluator
from trainer.extensions import PlainText


class FixedLogits(chainer.Link):
    """Logits looked up by the image's index (stored in its only pixel)."""

    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def forward(self, x):
        return chainer.Variable(self.logits[x[:, 0, 0, 0].astype(int)])


def test_the_evaluation_bar_counts_images_and_ends_at_a_positive_rate(capsys):
    n = 23
    logits = np.random.default_rng(0).normal(size=(n, 3)).astype(np.float32)
    images = np.zeros((n, 1, 1, 1), np.float32)
    images[:, 0, 0, 0] = np.arange(n)
    data = list(zip(images, np.arange(n, dtype=np.int32) % 3, strict=True))
    iterator = iterators.SerialIterator(data, 5, repeat=False, shuffle=False)
    evaluator = ClassificationEvaluator(
        iterator, FixedLogits(logits), list('abc'), progress_bar=True
    )
    evaluator()
    out = capsys.readouterr().out
    assert 'iterations' not in out and 'iters/sec' not in out
    counts = [int(done) for done in re.findall(r'(\d+) / 23 images', out)]
    assert counts == [5, 10, 15, 20, 23]
    rates = [float(rate) for rate in re.findall(r'(\S+) images/sec', out)]
    assert len(rates) == 5 and all(rate >= 0 for rate in rates)
    assert '100.00%' in out and '-' not in ''.join(re.findall(r'finish: ([^.]*)\.', out))


def test_plain_text_drops_terminal_control_sequences():
    written = []

    class Out:
        def write(self, text):
            written.append(text)

        def flush(self):
            pass

    plain = PlainText(Out())
    plain.write('\x1b[J1  2.3\n')
    plain.write('\x1b[3Aplain\n')
    assert written == ['1  2.3\n', 'plain\n']


def test_training_without_progress_prints_no_escape_sequences(tmp_path, capsys):
    archive = write_cifar10(tmp_path / 'data', n_train=20, n_test=10)
    options = trainer.parse_args(
        ['-e', '1', '-b', '10', '--preset', '32', '--workers', '0', '-p', str(tmp_path)]
        + ['--img-dir', str(tmp_path / 'img'), '--data', str(archive), '--no-progress']
    )
    trainer.train(SqueezeNet(10), options)
    out = capsys.readouterr().out
    assert 'epoch' in out and '\x1b' not in out
