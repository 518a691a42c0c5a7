"""Shared pytest fixtures and markers."""

import numpy as np
import pytest


def pytest_addoption(parser):
    parser.addoption('--run-slow', action='store_true', help='also run tests marked slow')


def pytest_configure(config):
    config.addinivalue_line('markers', 'slow: long test, run with --run-slow (make test-all)')
    config.addinivalue_line('markers', 'gpu: needs CuPy and a CUDA GPU')
    config.addinivalue_line('markers', 'mpi: needs mpi4py and mpiexec')


def pytest_collection_modifyitems(config, items):
    if config.getoption('--run-slow'):
        return
    skip = pytest.mark.skip(reason='slow: run with --run-slow (make test-all)')
    for item in items:
        if 'slow' in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def rng():
    return np.random.default_rng(0)
