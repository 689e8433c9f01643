"""The offline bundle: pinned wheel sets, the three upload folders (wheels dataset,
model dataset, kernel), their metadata and secret checks, the offline-install proof,
and the push to Kaggle."""
