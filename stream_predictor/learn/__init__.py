"""Learning from recorded sessions: the data, recording and labelling, training, offline decisions, evaluation."""
