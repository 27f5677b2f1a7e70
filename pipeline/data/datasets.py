"""The datasets the pipeline knows: file names, pinned digests, default mirrors, class names."""

from dataclasses import dataclass
from typing import Literal

from pipeline.core.param_sections import DatasetName

Role = Literal["train_images", "train_labels", "test_images", "test_labels"]


@dataclass(frozen=True)
class IdxFile:
    """One IDX file as published: its name on a mirror (without ``.gz``), its uncompressed digest and size,
    and the shape of its unsigned bytes (``None`` where a file is not one of a known dataset)."""

    name: str
    sha256: str
    size: int
    shape: tuple[int, ...] | None = None

    @property
    def gz_name(self) -> str:
        """The compressed name under which mirrors serve the file."""
        return f"{self.name}.gz"


@dataclass(frozen=True)
class DatasetSpec:
    """Everything the download and prepare stages need to know about a dataset."""

    name: DatasetName
    files: dict[Role, IdxFile]
    default_mirrors: tuple[str, ...]
    class_names: tuple[str, ...]


def _idx_files(digests: dict[Role, tuple[str, int]]) -> dict[Role, IdxFile]:
    names: dict[Role, str] = {
        "train_images": "train-images-idx3-ubyte",
        "train_labels": "train-labels-idx1-ubyte",
        "test_images": "t10k-images-idx3-ubyte",
        "test_labels": "t10k-labels-idx1-ubyte",
    }
    shapes: dict[Role, tuple[int, ...]] = {  # MNIST and Fashion-MNIST share the layout
        "train_images": (60_000, 28, 28),
        "train_labels": (60_000,),
        "test_images": (10_000, 28, 28),
        "test_labels": (10_000,),
    }
    return {role: IdxFile(names[role], *digests[role], shape=shapes[role]) for role in names}


DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        name="mnist",
        files=_idx_files(
            {
                "train_images": ("ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db", 47040016),
                "train_labels": ("65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5", 60008),
                "test_images": ("0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7", 7840016),
                "test_labels": ("ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2", 10008),
            }
        ),
        default_mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ),
        class_names=tuple(str(digit) for digit in range(10)),
    ),
    "fashion_mnist": DatasetSpec(
        name="fashion_mnist",
        files=_idx_files(
            {
                "train_images": ("c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888", 47040016),
                "train_labels": ("bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9", 60008),
                "test_images": ("5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b", 7840016),
                "test_labels": ("0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34", 10008),
            }
        ),
        default_mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        class_names=(
            "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
            "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
        ),
    ),
}
