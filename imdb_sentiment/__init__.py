"""IMDB sentiment: Embedding -> SimpleRNN / LSTM / GRU -> Dense, and their comparison.

    python -m imdb_sentiment.train --rnn lstm --data_path DIR   # aclImdb/ or aclImdb_v1.tar.gz
    python -m imdb_sentiment.compare --data_path DIR
    python -m imdb_sentiment.predict --save_path runs/imdb_sentiment/lstm "A fine film."

data.py reads and vectorises the reviews, model.py builds the three models,
train.py trains one, compare.py trains all three, predict.py scores new text.
"""
