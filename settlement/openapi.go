package settlement

import _ "embed"

// OpenAPI is this package's fragment of the API document.
//
//go:embed openapi.json
var OpenAPI []byte
