"""What pyproject.toml cannot say: the packages, with ``gallery/`` shipped as ``symdl._gallery``.

The gallery scripts live at the top of the checkout (``gallery/``); an installed symdl
carries them as ``symdl/_gallery/`` so that ``symdl gallery`` works in any folder.
"""
from setuptools import find_packages, setup

setup(packages=[*find_packages(include=["symdl", "symdl.*"]), "symdl._gallery"],
      package_dir={"symdl._gallery": "gallery"})
