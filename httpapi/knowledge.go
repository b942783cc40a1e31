package httpapi

import (
	"context"
	"fmt"
	"net/http"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/bulkhead-dev/bulkhead/retrieval"
)

// Knowledge handlers: documents are ingested into PostgreSQL and the
// tenant's vector collection through retrieval.Service, and queries and
// answers only ever see what the caller's scope sees.

type (
	queryInput struct {
		Query string `json:"query" openapi:"required"`
		K     int    `json:"k"`
	}
	queryResult struct {
		Passages []retrieval.Passage `json:"passages"`
	}
)

// errNoKnowledge: the server runs without a knowledge layer.
var errNoKnowledge = fmt.Errorf("no knowledge layer configured: %w", bulkhead.ErrUnavailable)

func (s *Server) knowledgeLayer() (*retrieval.Service, error) {
	if s.know == nil {
		return nil, errNoKnowledge
	}
	return s.know, nil
}

func (s *Server) createDocument(w http.ResponseWriter, r *http.Request) error {
	k, err := s.knowledgeLayer()
	if err != nil {
		return err
	}
	var in documentInput
	if err := decode(w, r, s.maxBody, &in); err != nil {
		return err
	}
	d, err := k.Ingest(r.Context(), postgres.NewDocument{Title: in.Title, Content: in.Content, Visibility: in.Visibility, RoomID: in.RoomID, Confidential: in.Confidential})
	if err != nil {
		return err
	}
	d.Content = ""
	writeJSON(w, http.StatusCreated, d)
	return nil
}

func (s *Server) deleteDocument(w http.ResponseWriter, r *http.Request) error {
	k, err := s.knowledgeLayer()
	if err != nil {
		return err
	}
	return deleteByID(w, r, k.DeleteDocument)
}

func (s *Server) query(w http.ResponseWriter, r *http.Request) error {
	return s.ask(w, r, func(k *retrieval.Service, ctx context.Context, q retrieval.Query) (any, error) {
		ps, err := k.Query(ctx, q)
		return queryResult{Passages: ps}, err
	})
}

func (s *Server) answer(w http.ResponseWriter, r *http.Request) error {
	return s.ask(w, r, func(k *retrieval.Service, ctx context.Context, q retrieval.Query) (any, error) {
		return k.Answer(ctx, q)
	})
}

// ask decodes a queryInput, runs f on it and answers 200 with its result.
func (s *Server) ask(w http.ResponseWriter, r *http.Request, f func(*retrieval.Service, context.Context, retrieval.Query) (any, error)) error {
	k, err := s.knowledgeLayer()
	if err != nil {
		return err
	}
	var in queryInput
	if err := decode(w, r, s.maxBody, &in); err != nil {
		return err
	}
	v, err := f(k, r.Context(), retrieval.Query{Text: in.Query, K: in.K})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}
