"""Architecture diagrams like the paper's Figures 2-7: DOT source, rendered by Graphviz."""

from nestdsl.draw.dot import to_dot
from nestdsl.draw.render import RENDERERS, render

__all__ = ["RENDERERS", "render", "to_dot"]
