"""The read side: reader, index, metric parse and cache, the filter grammar and search."""
