"""`i2a eval`: audio-level scores of sonifications (CS, CLAP score, FAD, FD) and the translator audio leaderboard."""
