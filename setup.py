"""The wheel carries the UI's browser libraries (rill/static/vendor, git-ignored): when they are
missing, `make vendor` copies them from npm before the package is built."""
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class WithVendor(build_py):
    def run(self):
        if not Path("rill/static/vendor/.copied").exists():
            subprocess.run(["make", "vendor"], check=True)
        super().run()


setup(cmdclass={"build_py": WithVendor})
