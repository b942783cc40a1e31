package retrieval

// QueryTerms is queryTerms, for tests that search the lexical index
// directly.
var QueryTerms = queryTerms
