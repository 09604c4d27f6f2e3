"""Build hook: the shipped models travel inside the package.

Everything else is configured in pyproject.toml. The repository keeps its models in
``models/`` (beside ``src/``) so that training and export write them in one place; a wheel
built from the repository, or from its sdist, copies whatever ``models/*.iodfm`` and their
cards ``models/*.json`` exist at build time into ``iodfz/models``, where ``iodfz.zoo`` finds
them in an installed package, and so do the predictive coders' default parameters
(``models/iodf-predictive-*.json``, JSON files without a model). Editable installs read
``models/`` directly.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

MODELS = Path(__file__).resolve().parent / "models"


class BuildWithModels(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        target = Path(self.build_lib, "iodfz", "models")
        self.mkpath(str(target))
        for path in sorted([*MODELS.glob("*.iodfm"), *MODELS.glob("*.json")]):
            self.copy_file(str(path), str(target / path.name))


setup(cmdclass={"build_py": BuildWithModels})
