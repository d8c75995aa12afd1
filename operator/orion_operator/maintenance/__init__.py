"""Database maintenance: ANALYZE, VACUUM, batched retention deletes and a size report."""
