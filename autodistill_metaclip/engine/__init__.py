"""The model engine: the checkpoint table (``checkpoints``), safe weights (``weights``), an
open_clip model on one device (``encoder``), the one batched stream (``batching``) and the
classification heads built from an ontology (``heads``)."""
