"""Change review: a stack's `pulumi preview` as a pull-request comment (`cloudservice
preview-comment`), built from the engine's JSON and the roles' own summaries."""

from ._comment import MARKER, render_comment
from ._preview import Preview, Step, parse_preview

__all__ = ["MARKER", "Preview", "Step", "parse_preview", "render_comment"]
