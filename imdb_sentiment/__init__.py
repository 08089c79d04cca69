"""IMDB sentiment: Embedding -> SimpleRNN / LSTM / GRU -> Dense, and their comparison.

    python -m imdb_sentiment.train --rnn lstm --data_dir ../shared/data/imdb
    python -m imdb_sentiment.compare --data_dir ../shared/data/imdb
    python -m imdb_sentiment.predict --model runs/imdb_sentiment/lstm.keras "A fine film."

data.py reads and vectorises the reviews, model.py builds the three models,
train.py trains one, compare.py trains all three, predict.py scores new text.
"""
