"""The paper's model, one file per component (Huang et al. 2024, section 3)."""

from dferjax.models.dfer import DFERModel, Outputs, build_model
from dferjax.models.loss import dfer_loss

__all__ = ["DFERModel", "Outputs", "build_model", "dfer_loss"]
