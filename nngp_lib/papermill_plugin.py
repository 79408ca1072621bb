"""papermill reads the book's jupytext chapters directly: ``papermill book/chapters/nb101.py out.ipynb``.

papermill loads every handler of the ``papermill.io`` entry-point group when it is
imported; ``pyproject.toml`` registers :data:`handler` there under papermill's own
scheme name ``local``. papermill falls back to the *last* ``local`` handler it lists
for any path without a scheme, so importing this module takes papermill's built-in
``LocalHandler`` off the list first: ours is then the only local handler.

:class:`JupytextLocalHandler` is papermill's ``LocalHandler`` (same working-directory
handling, same writes) except that

* a path whose extension jupytext reads as a notebook other than ``.ipynb`` (``.py``,
  ``.md``, ...) is read with jupytext, so the percent script stays the single source
  and no intermediate ``.ipynb`` is ever written;
* writing an executed notebook to such a path is refused with a one-line error, since
  that would overwrite a source with its outputs stripped; ``.ipynb`` paths are
  unchanged.

Without an output path papermill itself decides: at a terminal it stops with
``Missing argument 'OUTPUT_PATH'``; when its standard output is a pipe (or the output is
``-``) it writes the executed notebook to standard output, which
``papermill chapter.py | jupyter nbconvert --stdin --to html`` uses. ``nngp-nas chapter``
defaults the output to ``artifacts/chapters/<name>.ipynb``.
"""

from __future__ import annotations

import os
import warnings

import nbformat
from papermill import iorw

# papermill warns that a notebook path does not end in .ipynb; for the formats read here
# that is the point, so only those warnings are silenced.
warnings.filterwarnings("ignore", message=r"The specified file \(.*\.(py|md|Rmd|qmd)\) does not end in one of")


def _is_jupytext_path(path: str) -> bool:
    from jupytext.formats import NOTEBOOK_EXTENSIONS

    extension = os.path.splitext(str(path).split("?")[0])[1]
    return extension != ".ipynb" and extension in NOTEBOOK_EXTENSIONS


class JupytextLocalHandler(iorw.LocalHandler):
    """papermill's local file handler, reading jupytext notebooks (see the module docstring)."""

    def read(self, path):
        if not _is_jupytext_path(path):
            return super().read(path)
        import jupytext

        with iorw.chdir(self._cwd):
            notebook = jupytext.read(path)
        return nbformat.writes(notebook)

    def write(self, buf, path):
        if _is_jupytext_path(path):
            raise ValueError(
                f"papermill output {path} is a notebook source (jupytext reads it): give an .ipynb output path "
                "so the chapter's source is not overwritten"
            )
        return super().write(buf, path)


def _without_builtin_local_handler() -> None:
    """Take papermill's own ``local`` handler off its list, so the fallback is ours."""
    io = getattr(iorw, "papermill_io", None)
    if io is not None:
        io._handlers = [
            (scheme, registered) for scheme, registered in io._handlers
            if not (scheme == "local" and type(registered) is iorw.LocalHandler)
        ]


_without_builtin_local_handler()
handler = JupytextLocalHandler()
