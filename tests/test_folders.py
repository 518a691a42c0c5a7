"""A folder of images as a data set (trainer.folders): decoding as predict does, one line per
kind of bad input, and the class names carried from training to prediction."""

import json
import logging
import pickle
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import write_cifar10
from PIL import Image

import main
from inference import load_predictor, open_image, to_cifar
from trainer import DataError, load_dataset
from trainer.folders import BYTES_PER_IMAGE, _available_memory, load_image_folder
from trainer.run_folder import class_names

COLOURS = {'bird': (200, 40, 40), 'cat': (40, 200, 40), 'dog': (40, 40, 200)}


def write_image(path: Path, colour=(128, 64, 32), size=(40, 30), mode='RGB', seed=0) -> Path:
    """An image of ``colour`` with noise, saved in the format of ``path``'s suffix."""
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(colour) + rng.normal(0, 20, (size[1], size[0], 3)), 0, 255)
    image = Image.fromarray(pixels.astype(np.uint8), 'RGB')
    if mode == 'RGBA':
        image.putalpha(Image.new('L', image.size, 255))
    elif mode != 'RGB':
        image = image.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def write_tree(root: Path, per_class: int = 4, classes=tuple(COLOURS), test_classes=None) -> Path:
    """ROOT/train/<class>/ and ROOT/test/<class>/ with images of several formats and modes."""
    kinds = [('png', 'L', (28, 28)), ('jpg', 'RGB', (64, 48)), ('bmp', 'RGB', (32, 32)),
             ('webp', 'RGB', (50, 50)), ('png', 'RGBA', (20, 36))]  # fmt: skip
    for split, names in (('train', classes), ('test', test_classes or classes)):
        for name in names:
            for i in range(per_class):
                suffix, mode, size = kinds[i % len(kinds)]
                path = root / split / name / f'{i:04d}.{suffix}'
                write_image(path, COLOURS.get(name, (90, 90, 90)), size, mode, seed=i)
    return root


def test_classes_are_the_sorted_subfolders_and_pixels_are_predicts(tmp_path):
    root = write_tree(tmp_path / 'images', per_class=5, classes=('dog', 'cat', 'bird'))
    (root / 'train' / 'cat' / 'notes.txt').write_text('not an image')
    (root / 'train' / 'cat' / '.DS_Store').write_bytes(b'\0')
    (root / 'train' / '.hidden').mkdir()
    data = load_image_folder(root)
    assert data.label_names == ['bird', 'cat', 'dog'] and data.n_classes == 3
    assert data.train.images.shape == (15, 3, 32, 32) and data.train.images.dtype == np.uint8
    assert data.test.labels.tolist() == [0] * 5 + [1] * 5 + [2] * 5
    assert data.val is None and data.skipped == ()
    # every mode (grey 28x28, RGBA, JPEG, BMP, WebP) decoded exactly as predict decodes it
    files = sorted((root / 'train' / 'cat').glob('0*'))
    for i, path in enumerate(files):
        assert np.array_equal(data.train.images[5 + i], to_cifar(open_image(path)))
    grey = data.train.images[5]
    assert np.array_equal(grey[0], grey[1]) and np.array_equal(grey[1], grey[2])


def test_transparent_pixels_become_white_as_in_predict(tmp_path):
    root = write_tree(tmp_path / 'images', per_class=1)
    clear = Image.new('RGBA', (10, 10), (255, 0, 0, 0))
    clear.save(root / 'train' / 'cat' / 'clear.png')
    data = load_image_folder(root)
    index = [i for i, label in enumerate(data.train.labels) if label == 1][-1]
    assert (data.train.images[index] == 255).all()


def test_val_folder_and_nested_folders(tmp_path):
    root = write_tree(tmp_path / 'images', per_class=2)
    write_image(root / 'val' / 'dog' / 'a.png')
    write_image(root / 'train' / 'dog' / 'more' / 'deep.jpg')
    data = load_image_folder(root)
    assert len(data.val) == 1 and data.val.labels.tolist() == [2]
    assert (data.train.labels == 2).sum() == 3


def _truncated(root: Path) -> Path:
    path = write_image(root / 'train' / 'cat' / 'broken.jpg', size=(64, 64))
    path.write_bytes(path.read_bytes()[:300])
    return path


def _bomb(root: Path) -> Path:
    """A PNG header declaring 30000 x 30000 pixels (the data is never reached)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack('>I', len(data)) + body + struct.pack('>I', zlib.crc32(body))

    header = struct.pack('>IIBBBBB', 30000, 30000, 8, 2, 0, 0, 0)
    path = root / 'train' / 'dog' / 'bomb.png'
    path.write_bytes(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header) + chunk(b'IDAT', b'x'))
    return path


def _empty_class(root: Path) -> Path:
    (root / 'train' / 'empty').mkdir()
    return root


def _emptied_test_class(root: Path) -> Path:
    for path in (root / 'test' / 'cat').iterdir():
        path.unlink()
    (root / 'test' / 'cat' / 'sub').mkdir()
    return root


def _one_class(root: Path) -> Path:
    for name in ('cat', 'dog'):
        shutil.rmtree(root / 'train' / name)
        shutil.rmtree(root / 'test' / name)
    return root


def _extra_class(split: str):
    def spoil(root: Path) -> Path:
        write_image(root / split / 'zebra' / 'z.png')
        return root

    return spoil


def _flat(root: Path) -> Path:
    for path in (root / 'train').rglob('*.*'):
        path.rename(root / 'train' / f'{path.parent.name}-{path.name}')
    for name in COLOURS:
        (root / 'train' / name).rmdir()
    return root


def _no_test(root: Path) -> Path:
    shutil.rmtree(root / 'test')
    return root


def _returning_root(spoil):
    def run(root: Path) -> Path:
        spoil(root)
        return root

    return run


@pytest.mark.parametrize(
    'spoil, message',
    [
        (lambda r: r / 'missing', 'missing: no such folder'),
        (lambda r: _file(r / 'data.tar.gz'), 'a file, not a folder of train/<class>'),
        (_no_test, 'no test/ folder'),
        (_empty_class, 'train/empty: an empty class folder'),
        (_emptied_test_class, 'test/cat: an empty class folder'),
        (_extra_class('test'), 'test/zebra: a class that train/ does not have'),
        (_extra_class('val'), 'val/zebra: a class that train/ does not have'),
        (_one_class, '1 class folders (only bird); a classifier needs at least two'),
        (_flat, '0 class folders (none); a classifier needs at least two: the images go in'),
        (_returning_root(_truncated), 'broken.jpg: damaged image'),
        (_returning_root(_bomb), 'bomb.png: too many pixels'),
        (_returning_root(lambda r: _file(r / 'train' / 'cat' / 'e.png')), 'e.png: not an image'),
    ],
)
def test_bad_input_is_one_line_naming_it(tmp_path, spoil, message):
    root = write_tree(tmp_path / 'images', per_class=1)
    path = spoil(root)
    with pytest.raises(DataError, match='.') as error:
        load_image_folder(path)
    assert message in str(error.value) and '\n' not in str(error.value)


def test_skip_bad_images_leaves_them_out_and_counts_them(tmp_path, caplog):
    root = write_tree(tmp_path / 'images', per_class=2)
    broken, bomb = _truncated(root), _bomb(root)
    with pytest.raises(DataError, match='--skip-bad-images'):
        load_image_folder(root)
    with caplog.at_level(logging.INFO, logger='trainer.folders'):
        data = load_image_folder(root, skip_bad=True)
    assert len(data.train) == 6 and len(data.skipped) == 2
    assert {s.split(': ')[0] for s in data.skipped} == {str(broken), str(bomb)}
    assert 'skipped 2 unreadable images' in caplog.text


def test_a_class_left_empty_by_skipping_is_refused(tmp_path):
    root = write_tree(tmp_path / 'images', per_class=1)
    (root / 'train' / 'cat' / '0000.png').write_bytes(b'garbage')
    with pytest.raises(DataError, match='train/cat: no readable images'):
        load_image_folder(root, skip_bad=True)


def test_memory_is_checked_before_decoding(tmp_path):
    root = write_tree(tmp_path / 'images', per_class=1)
    need = 6 * BYTES_PER_IMAGE
    assert len(load_image_folder(root, memory=need).train) == 3
    with pytest.raises(DataError, match='6 images take 0.00 GB decoded at 32x32'):
        load_image_folder(root, memory=need - 1)
    assert _available_memory() is None or _available_memory() > need


def test_load_dataset_chooses_the_folder_and_needs_a_path(tmp_path):
    root = write_tree(tmp_path / 'images', per_class=1)
    assert load_dataset('folder', root).label_names == ['bird', 'cat', 'dog']
    with pytest.raises(DataError, match='--dataset folder needs --data PATH'):
        load_dataset('folder', None)
    with pytest.raises(DataError, match=r'a folder of images\? --dataset folder'):
        load_dataset('cifar10', root)


def argv(out: Path, data: Path, *extra: str) -> list[str]:
    return [
        '-p', str(out), '-b', '4', '--preset', '32', '--workers', '0', '--seed', '0', '-e', '1',
        '--img-dir', str(out / 'img'), '--data', str(data), *extra,
    ]  # fmt: skip


def test_train_on_a_folder_then_predict_with_its_class_names(tmp_path, capsys):
    root = write_tree(tmp_path / 'images', per_class=4, classes=('kiwi', 'lime', 'plum'))
    out = tmp_path / 'run'
    assert main.main(argv(out, root, '--dataset', 'folder')) == 0
    settings = json.loads((out / 'run.json').read_text())['settings']
    assert settings['class_names'] == ['kiwi', 'lime', 'plum'] and settings['n_classes'] == 3
    assert settings['dataset'] == 'folder' and settings['train_images'] == 12
    assert class_names(out / 'model.npz', 'folder') == ('kiwi', 'lime', 'plum')
    assert load_predictor(out / 'model.npz').labels == ('kiwi', 'lime', 'plum')
    capsys.readouterr()
    image = root / 'test' / 'lime' / '0000.png'
    assert main.main(['predict', '-m', str(out / 'model.npz'), str(image), '--json']) == 0
    [answer] = json.loads(capsys.readouterr().out)
    labels = [p['label'] for p in answer['predictions']]
    assert labels and set(labels) <= {'kiwi', 'lime', 'plum'}


def test_a_resume_with_other_class_names_is_refused(tmp_path, capsys):
    root = write_tree(tmp_path / 'images', per_class=2)
    out = tmp_path / 'run'
    assert main.main(argv(out, root, '--dataset', 'folder')) == 0
    for split in ('train', 'test'):
        (root / split / 'dog').rename(root / split / 'wolf')
    capsys.readouterr()
    assert main.main(argv(out, root, '--dataset', 'folder', '-e', '2')) == 1
    error = capsys.readouterr().err
    assert "made with class_names ['bird', 'cat', 'dog'], not ['bird', 'cat', 'wolf']" in error


def test_records_without_class_names_fall_back_to_the_data_sets(tmp_path):
    record = {'format': 1, 'settings': {'arch': 'squeezenet', 'dataset': 'cifar100'}}
    (tmp_path / 'run.json').write_text(json.dumps(record))
    assert class_names(tmp_path / 'model.npz', 'cifar100')[:2] == ('apple', 'aquarium_fish')
    assert class_names(tmp_path / 'elsewhere' / 'model.npz', 'cifar10')[0] == 'airplane'


def test_bad_folder_stops_before_the_run_folder_is_made(tmp_path, capsys):
    root = write_tree(tmp_path / 'images', per_class=1)
    _truncated(root)
    out = tmp_path / 'run'
    assert main.main(argv(out, root, '--dataset', 'folder')) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and 'broken.jpg: damaged image' in error[0]
    assert not out.exists()


def test_weights_of_a_folder_run_without_their_record_are_refused(tmp_path):
    (tmp_path / 'model.npz').write_bytes(b'')
    with pytest.raises(Exception, match='no run.json beside it names the classes'):
        class_names(tmp_path / 'model.npz', 'folder')


def test_a_cifar_archive_with_its_own_names_predicts_with_them(tmp_path):
    data = write_cifar10(tmp_path / 'data', n_train=20, n_test=10, archive=False)
    names = [f'kind{i}' for i in range(10)]
    meta = data / 'cifar-10-batches-py' / 'batches.meta'
    meta.write_bytes(pickle.dumps({b'label_names': [n.encode() for n in names]}, protocol=2))
    out = tmp_path / 'run'
    assert main.main(argv(out, data)) == 0
    log = json.loads((out / 'log.json').read_text())
    assert 'validation/main/accuracy/kind3' in log[0]
    assert load_predictor(out / 'model.npz').labels == tuple(names)


def _file(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b'')
    return path
