package api

import (
	"errors"
	"net/http"

	"github.com/gofiber/fiber/v2"

	"github.com/pyexec/pyexec"
)

// StatusOf is the one place where error codes become HTTP statuses.
// Outcomes caused by the script itself are 200: the request was served and
// the body says what the script did.
func StatusOf(code pyexec.Code) int {
	switch code {
	case "":
		return http.StatusOK
	case pyexec.CodeInvalidRequest, pyexec.CodeValidation:
		return http.StatusBadRequest
	case pyexec.CodePayloadTooLarge:
		return http.StatusRequestEntityTooLarge
	case pyexec.CodeHeaderTooLarge:
		return http.StatusRequestHeaderFieldsTooLarge
	case pyexec.CodeUnsupportedMediaType:
		return http.StatusUnsupportedMediaType
	case pyexec.CodeRequestTimeout:
		return http.StatusRequestTimeout
	case pyexec.CodeRuntime, pyexec.CodeInvalidResult, pyexec.CodeTimeout,
		pyexec.CodeMemoryLimit, pyexec.CodeOutputLimit, pyexec.CodeSandbox:
		return http.StatusOK
	case pyexec.CodeUnauthorized:
		return http.StatusUnauthorized
	case pyexec.CodeForbidden:
		return http.StatusForbidden
	case pyexec.CodeRateLimited:
		return http.StatusTooManyRequests
	case pyexec.CodeNotFound:
		return http.StatusNotFound
	case pyexec.CodeMethodNotAllowed:
		return http.StatusMethodNotAllowed
	case pyexec.CodeOverloaded:
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

// internalMessage is all a client learns about a failure of the service.
const internalMessage = "internal error; see the service logs"

// toAppError turns any error reaching the HTTP layer into an *pyexec.Error
// fit for the client: fiber's own errors keep their meaning, our errors keep
// their code, and anything else becomes internal_error with a generic text.
func toAppError(err error) *pyexec.Error {
	var ae *pyexec.Error
	if errors.As(err, &ae) {
		if ae.Code == pyexec.CodeInternal {
			return &pyexec.Error{Code: pyexec.CodeInternal, Message: internalMessage, Err: err}
		}
		return ae
	}
	var fe *fiber.Error
	if errors.As(err, &fe) {
		switch fe.Code {
		case fiber.StatusNotFound:
			return pyexec.Errorf(pyexec.CodeNotFound, "no such endpoint")
		case fiber.StatusMethodNotAllowed:
			return pyexec.Errorf(pyexec.CodeMethodNotAllowed, "method not allowed on this endpoint")
		case fiber.StatusRequestEntityTooLarge:
			return errBodyTooLarge()
		case fiber.StatusRequestHeaderFieldsTooLarge:
			return errHeaderTooLarge()
		case fiber.StatusRequestTimeout:
			return errRequestTimeout()
		case fiber.StatusBadRequest:
			return &pyexec.Error{Code: pyexec.CodeInvalidRequest, Message: "malformed HTTP request", Err: err}
		}
	}
	return &pyexec.Error{Code: pyexec.CodeInternal, Message: internalMessage, Err: err}
}

// The answers to requests that could not be read whole. They are built in
// one place because both fiber's errors and fasthttp's read errors lead here.
func errBodyTooLarge() *pyexec.Error {
	return pyexec.Errorf(pyexec.CodePayloadTooLarge, "request body is larger than allowed")
}

func errHeaderTooLarge() *pyexec.Error {
	return pyexec.Errorf(pyexec.CodeHeaderTooLarge, "request line and headers are larger than allowed")
}

func errRequestTimeout() *pyexec.Error {
	return pyexec.Errorf(pyexec.CodeRequestTimeout, "the request did not arrive in time")
}

// errShuttingDown answers a request the service's shutdown cut off, so that
// the client knows to retry elsewhere rather than report a failure.
func errShuttingDown(cause error) *pyexec.Error {
	return &pyexec.Error{Code: pyexec.CodeOverloaded, Message: "the service is shutting down", Err: cause}
}
