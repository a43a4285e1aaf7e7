"""Comparison tables and accuracy-vs-cost figures built from the results store."""
from .figures import FigureSet, PanelInfo, make_figures, pareto_front
from .tables import make_table

__all__ = ["FigureSet", "PanelInfo", "make_figures", "make_table", "pareto_front"]
