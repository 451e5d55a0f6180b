package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
)

// The OpenAPI document is assembled from a base (below) and one fragment
// per capability (each package's openapi.json, holding "paths" and
// "components.schemas"), so a package documents the routes it owns.
// TestOpenAPIMatchesRoutes keeps the document and the routes in step.
const openAPIBase = `{
  "openapi": "3.0.3",
  "info": {"title": "Qinba API", "version": "1",
    "description": "Telemedicine referral and one-stop settlement for a county health network. Every error has the shape {\"error\": {\"code\", \"message\", \"fields\"}}."},
  "servers": [{"url": "/"}],
  "security": [{"bearer": []}],
  "paths": {
    "/healthz": {"get": {"summary": "Liveness", "security": [], "responses": {"200": {"description": "alive"}}}},
    "/readyz": {"get": {"summary": "Readiness: database reachable and schema current", "security": [],
      "responses": {"200": {"description": "ready"}, "503": {"$ref": "#/components/responses/Error"}}}},
    "/metrics": {"get": {"summary": "Prometheus metrics (loopback only)", "security": [], "responses": {"200": {"description": "metrics"}}}},
    "/api/openapi.json": {"get": {"summary": "This document", "security": [], "responses": {"200": {"description": "OpenAPI 3 document"}}}}
  },
  "components": {
    "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
    "responses": {"Error": {"description": "Error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}},
    "schemas": {
      "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {
        "code": {"type": "string", "enum": ["invalid", "unauthenticated", "forbidden", "not_found", "conflict", "too_large", "unsupported", "rate_limited", "unavailable", "internal", "precondition_req"]},
        "message": {"type": "string"},
        "fields": {"type": "object", "additionalProperties": {"type": "string"}},
        "details": {"type": "object"},
        "request_id": {"type": "string"}}}}},
      "Money": {"type": "string", "pattern": "^-?[0-9]+\\.[0-9]{2}$", "description": "yuan with 2 decimals"}
    }
  }
}`

// AddOpenAPI merges a capability's OpenAPI fragment into the document.
func (a *App) AddOpenAPI(fragment []byte) error {
	if a.openapi == nil {
		if err := json.Unmarshal([]byte(openAPIBase), &a.openapi); err != nil {
			return err
		}
	}
	var frag struct {
		Paths      map[string]map[string]any `json:"paths"`
		Components struct {
			Schemas map[string]any `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(fragment, &frag); err != nil {
		return fmt.Errorf("openapi fragment: %w", err)
	}
	paths := a.openapi["paths"].(map[string]any)
	for p, ops := range frag.Paths {
		cur, _ := paths[p].(map[string]any)
		if cur == nil {
			cur = map[string]any{}
			paths[p] = cur
		}
		for m, op := range ops {
			if _, dup := cur[m]; dup {
				return fmt.Errorf("openapi: %s %s documented twice", m, p)
			}
			cur[m] = op
		}
	}
	schemas := a.openapi["components"].(map[string]any)["schemas"].(map[string]any)
	for n, s := range frag.Components.Schemas {
		schemas[n] = s
	}
	return nil
}

func (a *App) serveOpenAPI(c echo.Context) error {
	return c.JSON(http.StatusOK, a.openapi)
}

// openAPIPath turns an echo route path (/x/:id) into OpenAPI form (/x/{id}).
func openAPIPath(p string) string {
	parts := strings.Split(p, "/")
	for i, s := range parts {
		if strings.HasPrefix(s, ":") {
			parts[i] = "{" + s[1:] + "}"
		}
	}
	return strings.Join(parts, "/")
}
