"""Operations: monitoring the champions, retraining when due, and the nightly pipeline that runs every job."""
