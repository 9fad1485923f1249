"""copywatch's domain core: configuration, storage, tiling, embedding, indexing, matching, findings."""
