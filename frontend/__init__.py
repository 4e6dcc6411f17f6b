"""The Activations tab's source, installed as the package `tb_activations.static`.

pyproject.toml maps this folder to that package, so `pip install` ships these files as they
are: plain ES modules, no build step and no Node.js.
"""
