"""``python -m symdl``."""
from .cli import run

run()
