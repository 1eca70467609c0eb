"""Maps the repository's front-end folders to namespaced import names.

`tools/`, `server/` and `cli/` install as `carl_studio.tools`, `carl_studio.server` and
`carl_studio.cli`, so the wheel never puts generic top-level modules into site-packages.
Everything else lives in pyproject.toml.
"""

from setuptools import find_packages, setup

FRONT_ENDS = {"carl_studio.tools": "tools", "carl_studio.server": "server", "carl_studio.cli": "cli"}

packages = find_packages(include=["carl_engine", "carl_engine.*"])
package_dir = {}
for name, folder in FRONT_ENDS.items():
    package_dir[name] = folder
    packages += [name] + [f"{name}.{sub}" for sub in find_packages(folder)]

setup(packages=packages, package_dir=package_dir)
