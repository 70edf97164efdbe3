"""A tiny sentence-transformers model built locally (random BERT, WordPiece trained on the spot): no download.

Its embeddings mean nothing; it exists so that the real embedding path (load offline, encode, cosine) runs in
tests. Identical texts still embed identically, so their similarity is exactly 1.
"""

from __future__ import annotations

from pathlib import Path


def build_tiny_sentence_model(path: Path) -> Path:
    """Write a ``SentenceTransformer`` directory (Transformer + mean pooling + normalise) to ``path``."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, trainers
    from tokenizers.models import WordPiece
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    core = Tokenizer(WordPiece(unk_token="[UNK]"))
    core.normalizer = normalizers.BertNormalizer(lowercase=True)
    core.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    corpus = ["the invoice total is 42", "B7 exit north", "what is written on the page", "0123456789 abc"]
    core.train_from_iterator(corpus * 8, trainers.WordPieceTrainer(vocab_size=200, special_tokens=special))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]",
    )  # fmt: skip
    bert_dir = path / "bert"
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64,
    )  # fmt: skip
    BertModel(config).save_pretrained(bert_dir)
    tokenizer.save_pretrained(bert_dir)
    encoder = Transformer(str(bert_dir), max_seq_length=64)
    pooling = Pooling(encoder.get_embedding_dimension(), pooling_mode="mean")
    SentenceTransformer(modules=[encoder, pooling, Normalize()]).save(str(path))
    return path
