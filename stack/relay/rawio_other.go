//go:build !linux

package relay

import "io"

func readerOf(c Conn) io.Reader { return c }

func writerOf(c Conn) io.Writer { return c }

func closeWrite(c Conn) error { return c.CloseWrite() }
