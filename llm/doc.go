// Package llm turns text into vectors and questions into answers: an
// Embedder interface with two implementations (a built-in lexical embedder
// and a client for OpenAI-compatible /embeddings endpoints) and a Chat
// client for OpenAI-compatible /chat/completions endpoints (OpenAI, Ollama,
// vLLM, TEI, LiteLLM and the like).
//
// Guarantees:
//   - Embed returns exactly one vector per input, in input order, each of
//     Dimension() finite float32s and never all-zero, or an error and no
//     vectors. For a given Model() the same input gives the same vector, so
//     Model() is what a collection records to know which vectors it holds.
//   - A model endpoint that cannot answer (network error, timeout, an HTTP
//     error status, a malformed, oversized or incomplete response) is
//     ErrUnavailable, which callers report as 503, never an empty or
//     partial result. When the caller's context ends during a call to an
//     endpoint, the error matches both ErrUnavailable and ctx.Err().
//   - The API key is sent only as an "Authorization: Bearer" header. It
//     never appears in an error (it is redacted even from messages the
//     server sends back), and our error messages never quote request
//     bodies. Server messages are included trimmed to 200 characters; a
//     server that quotes its input in an error could put part of it there.
//   - Network use is bounded: a timeout per attempt, a limited number of
//     retries (429, 5xx and network errors only, with exponential backoff
//     and jitter, and Retry-After honoured up to a bound), and response
//     bodies read up to MaxResponseBytes.
//
// # The local embedder is lexical, not semantic
//
// Local ("local-lexical-v1") needs no network and no model file. It is a
// bag of words and character trigrams: lower-cased Unicode words
// (letters and digits; combining marks stay inside the word) and the
// trigrams of each word padded as "<word>", feature-hashed with signed
// hashing into 384 dimensions, weighted 1+ln(tf) (trigrams at half weight),
// and L2-normalised. Texts score high when they share words, and somewhat
// high when they share word pieces (morphology, typos: "embedding" and
// "embeding"). It knows nothing about meaning: "car" and "automobile" are
// as unrelated to it as "car" and "banana", and a question phrased in other
// words than its answer will not find it. Use an OpenAI-compatible endpoint
// (NewOpenAIEmbedder) for semantic search; Local is for tests, demos,
// air-gapped installs and keyword-like retrieval.
//
// Local does not Unicode-normalise its input: "é" written as one code point
// and as "e" plus a combining accent are different words to it (NFC-normalise
// text before embedding if sources mix the two). Its vectors are
// bit-identical across calls and processes on one CPU architecture; across
// architectures the last bit of a float may differ (math.Log is computed in
// assembly on some), which changes cosines by about 1e-7.
//
// Every exported function and method is safe for concurrent use.
package llm
