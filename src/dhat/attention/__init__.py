"""Attention maps and masks: Grad-CAM of a model, the mask rules that call pixels background, the attribution
sources compared in the paper's table 8, and the reference (mask) model trained here or loaded pre-trained."""
