"""Using a trained run: prediction, calibrated confidence, Grad-CAM, the unfamiliar-picture check, evaluation."""
