"""The mini-zoo: small encoders trained by repsim itself with the objective as the only variable.

Modules: ``archs`` (CNN, timm ViT, MLP), ``augment`` (batched tensor augmentations),
``captions`` (generated captions, tokenizer, text tower), ``objectives`` (cross-entropy, SimCLR,
Barlow Twins, CLIP, random init), ``data`` (the embedded sets as one training set), ``train``
(``repsim minizoo train``), ``evaluate`` (held-out accuracies), ``weights`` (float16 safetensors),
``manifest`` (manifest.csv and models.yaml) and ``loader`` (the ``minizoo`` zoo loader).
"""
