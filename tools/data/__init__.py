"""The data step: parse ../shared/data's files (one module per dataset), build the corpora (``registry``), the
held-out splits (``splits``) and the evaluation tasks (``tasks``). ``python -m tools.data NAME --out F.jsonl``
writes a corpus."""
