package httpx

import (
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/qinba/qinba/internal/apperr"
)

// CSVUpload returns an uploaded CSV file: the multipart part named field,
// or the whole body when it is sent as text/csv, limited to max bytes. what
// names the file in error messages ("the roster"). The caller closes it.
func CSVUpload(c echo.Context, field, what string, max int64) (io.ReadCloser, error) {
	ct := strings.ToLower(c.Request().Header.Get(echo.HeaderContentType))
	if strings.HasPrefix(ct, "text/csv") {
		return http.MaxBytesReader(c.Response(), c.Request().Body, max), nil
	}
	if !strings.HasPrefix(ct, echo.MIMEMultipartForm) {
		return nil, apperr.E(apperr.Unsupported, "send %s as multipart/form-data (field %q) or text/csv", what, field)
	}
	fh, err := c.FormFile(field)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, apperr.E(apperr.TooLarge, "%s is too large", what)
		}
		return nil, apperr.Field(field, "a CSV file is required")
	}
	return fh.Open()
}
