"""SMTP basics: greeting, HELO/EHLO, every verb's reply code and
enhanced code, command order, addresses and mailbox names.
Each test starts the real smtpd and talks to it over a loopback socket."""
import pytest

from conftest import (greeted, no_reply, only_file, parse_trace, queue_id,
                      raw_reply, send_mail, strip_trace, tree)

MSG = b"Subject: basic\r\n\r\nhello\r\n"
EHLO_KEYWORDS = {"PIPELINING", "SIZE 10485760", "8BITMIME",
                 "ENHANCEDSTATUSCODES", "HELP"}


def test_greeting_names_the_default_domain(server, connect):
    c = connect(server.port)
    assert c.reply_line() == "220 localhost ESMTP"


def test_ehlo_lists_the_extensions(server, connect):
    c = connect(server.port)
    c.reply_line()
    c.send("EHLO client.test\r\n")
    lines = raw_reply(c)
    assert lines[0].startswith("250-localhost"), lines
    assert all(l.startswith("250-") for l in lines[:-1]), lines
    assert lines[-1].startswith("250 "), lines
    keywords = [l[4:] for l in lines[1:]]
    assert EHLO_KEYWORDS <= set(keywords), keywords
    assert not any(k.startswith("AUTH") for k in keywords), "no users: no AUTH"
    assert not any(k.startswith("STARTTLS") for k in keywords)


def test_ehlo_and_helo_carry_no_enhanced_code(server, connect):
    c = connect(server.port)
    c.reply_line()
    assert c.cmd("HELO client.test") == "250 localhost"
    c.send("EHLO client.test\r\n")
    lines = raw_reply(c)
    assert lines[0][:4] == "250-" and lines[0][4:].split()[0] == "localhost"
    assert not any(l[4:5].isdigit() and l[5:6] == "." for l in lines), lines


def test_ehlo_size_follows_z(start_server, connect):
    srv = start_server("-z", "12345")
    lines = connect(srv.port).greet()
    assert "SIZE 12345" in lines, lines


def test_domain_flag_changes_greeting_helo_and_recipients(start_server,
                                                          connect):
    srv = start_server("-d", "example.org")
    c = connect(srv.port)
    assert c.reply_line() == "220 example.org ESMTP"
    assert c.cmd("HELO me.test") == "250 example.org"
    c.send("EHLO me.test\r\n")
    assert c.reply()[1][0].split()[0] == "example.org"
    assert c.cmd("MAIL FROM:<a@b.test>").startswith("250 2.1.0")
    assert c.cmd("RCPT TO:<postmaster@localhost>").startswith("550 5.7.1")
    assert c.cmd("RCPT TO:<postmaster@Example.ORG>").startswith("250 2.1.5")
    assert c.cmd("DATA").startswith("354")
    c.send(MSG + b".\r\n")
    queue_id(c.reply_line())
    _, fields, _ = parse_trace(only_file(srv, "postmaster")[1])
    assert fields["domain"] == "example.org"


@pytest.mark.parametrize("verb", ["HELO", "EHLO"])
def test_helo_without_a_name_is_refused(server, connect, verb):
    c = connect(server.port)
    c.reply_line()
    assert c.cmd(verb).startswith("501 5.5.4")
    assert c.cmd(verb + " ok.test").startswith("250")


def test_verbs_are_case_insensitive(server, connect):
    c = connect(server.port)
    c.reply_line()
    c.send("eHlO client.test\r\n")
    assert c.reply()[0] == 250
    assert c.cmd("mail from:<a@b.test>").startswith("250 2.1.0")
    assert c.cmd("rCpT To:<postmaster@localhost>").startswith("250 2.1.5")
    assert c.cmd("data").startswith("354")
    c.send(MSG + b".\r\n")
    queue_id(c.reply_line())
    assert c.cmd("noop").startswith("250 2.0.0")
    assert c.cmd("quit").startswith("221 2.0.0")


def test_simple_replies(server, connect):
    c = greeted(connect, server)
    assert c.cmd("NOOP").startswith("250 2.0.0")
    assert c.cmd("RSET").startswith("250 2.0.0")
    assert c.cmd("HELP") == ("214 2.0.0 Commands: HELO EHLO MAIL RCPT DATA "
                             "BDAT RSET NOOP QUIT VRFY HELP AUTH")
    assert c.cmd("EXPN postmaster").startswith("502 5.5.1")
    assert c.cmd("FROB").startswith("500 5.5.2")
    assert c.cmd("QUIT").startswith("221 2.0.0")
    assert c.closed()


def test_help_has_an_enhanced_code_on_every_line(server, connect):
    c = greeted(connect, server)
    c.send("HELP\r\n")
    lines = raw_reply(c)
    assert all(l[:3] == "214" and l[4:9] == "2.0.0" for l in lines), lines


def test_mail_before_helo_is_a_bad_sequence(server, connect):
    c = connect(server.port)
    c.reply_line()
    assert c.cmd("MAIL FROM:<a@b.test>").startswith("503 5.5.1")
    assert c.cmd("HELO x.test").startswith("250")
    assert c.cmd("MAIL FROM:<a@b.test>").startswith("250 2.1.0")


def test_order_of_commands(server, connect):
    c = greeted(connect, server)
    assert c.cmd("RCPT TO:<postmaster@localhost>").startswith("503 5.5.1")
    assert c.cmd("DATA").startswith("503 5.5.1")
    assert c.cmd("MAIL FROM:<a@b.test>").startswith("250 2.1.0")
    assert c.cmd("MAIL FROM:<a@b.test>").startswith("503 5.5.1")
    assert c.cmd("DATA").startswith("503 5.5.1")
    assert c.cmd("RCPT TO:<postmaster@localhost>").startswith("250 2.1.5")
    assert c.cmd("DATA now").startswith("501 5.5.4")
    assert c.cmd("DATA").startswith("354")
    c.send(MSG + b".\r\n")
    queue_id(c.reply_line())
    # the transaction is over: RCPT needs a new MAIL
    assert c.cmd("RCPT TO:<postmaster@localhost>").startswith("503 5.5.1")


def test_rset_clears_the_transaction(server, connect):
    c = greeted(connect, server)
    assert c.cmd("MAIL FROM:<a@b.test>").startswith("250 2.1.0")
    assert c.cmd("RCPT TO:<postmaster@localhost>").startswith("250 2.1.5")
    assert c.cmd("RSET").startswith("250 2.0.0")
    assert c.cmd("DATA").startswith("503 5.5.1")
    assert c.cmd("RCPT TO:<postmaster@localhost>").startswith("503 5.5.1")
    assert send_mail(c, "c@d.test", ["postmaster@localhost"],
                     MSG).startswith("250 2.0.0")
    rp, _, _ = parse_trace(only_file(server, "postmaster")[1])
    assert rp == "<c@d.test>"


def test_ehlo_again_resets_the_transaction(server, connect):
    c = greeted(connect, server)
    assert c.cmd("MAIL FROM:<a@b.test>").startswith("250 2.1.0")
    c.send("EHLO again.test\r\n")
    assert c.reply()[0] == 250
    assert c.cmd("RCPT TO:<postmaster@localhost>").startswith("503 5.5.1")


@pytest.mark.parametrize("line", ["MAIL", "MAIL FROM", "MAIL TO:<a@b.test>",
                                  "MAIL FROM:<a@b.test"])
def test_bad_mail_arguments(server, connect, line):
    c = greeted(connect, server)
    assert c.cmd(line).startswith("501 ")
    assert c.cmd("MAIL FROM:<a@b.test>").startswith("250 2.1.0")


@pytest.mark.parametrize("line", ["RCPT", "RCPT TO",
                                  "RCPT FROM:<x@localhost>"])
def test_bad_rcpt_arguments(server, connect, line):
    c = greeted(connect, server)
    c.cmd("MAIL FROM:<a@b.test>")
    assert c.cmd(line).startswith("501 ")
    assert c.cmd("RCPT TO:<postmaster@localhost>").startswith("250 2.1.5")


def test_unknown_mail_parameter(server, connect):
    c = greeted(connect, server)
    assert c.cmd("MAIL FROM:<a@b.test> FROB=1").startswith("555 5.5.4")


def test_mail_parameters_size_and_body(server, connect):
    c = greeted(connect, server)
    assert c.cmd("MAIL FROM:<a@b.test> SIZE=100 BODY=8BITMIME").startswith(
        "250 2.1.0")
    assert c.cmd("RCPT TO:<postmaster@localhost>").startswith("250 2.1.5")
    assert c.cmd("DATA").startswith("354")
    body = "Subject: caf\u00e9\r\n\r\nna\u00efve \u2603\r\n".encode()
    c.send(body + b".\r\n")
    queue_id(c.reply_line())
    assert strip_trace(only_file(server, "postmaster")[1]) == body


def test_null_sender(server, connect):
    c = greeted(connect, server)
    assert send_mail(c, "", ["postmaster@localhost"], MSG).startswith(
        "250 2.0.0")
    rp, _, msg = parse_trace(only_file(server, "postmaster")[1])
    assert rp == "<>" and msg == MSG


def test_unknown_user_and_relay(server, connect):
    c = greeted(connect, server)
    assert c.cmd("MAIL FROM:<a@b.test>").startswith("250 2.1.0")
    assert c.cmd("RCPT TO:<nobody@localhost>").startswith("550 5.1.1")
    assert c.cmd("RCPT TO:<postmaster@elsewhere.test>").startswith("550 5.7.1")
    assert c.cmd("RCPT TO:<postmaster@localhost.evil.test>").startswith(
        "550 5.7.1")
    # the transaction survives refused recipients
    assert c.cmd("RCPT TO:<postmaster@localhost>").startswith("250 2.1.5")
    assert c.cmd("DATA").startswith("354")
    c.send(MSG + b".\r\n")
    queue_id(c.reply_line())
    assert not (server.root / "nobody").exists()


def test_domain_and_local_part_are_case_insensitive(server, connect):
    c = greeted(connect, server)
    assert send_mail(c, "a@b.test", ["PostMaster@LOCALHOST"],
                     MSG).startswith("250 2.0.0")
    assert strip_trace(only_file(server, "postmaster")[1]) == MSG
    assert sorted(p.name for p in server.root.iterdir()
                  if p.name != ".journal") == ["postmaster"]


BAD_LOCAL_PARTS = ["a/b", "..", ".a", "a.", "a..b", "../postmaster",
                   "a\\b", "x" * 65, "a*b", "a%b", "a!b"]


@pytest.mark.parametrize("local", BAD_LOCAL_PARTS)
def test_bad_local_parts_never_touch_the_disk(server, connect, local):
    before = tree(server.root)
    c = greeted(connect, server)
    assert c.cmd("MAIL FROM:<a@b.test>").startswith("250 2.1.0")
    assert c.cmd("RCPT TO:<%s@localhost>" % local).startswith("501 5.1.3")
    assert c.cmd("NOOP").startswith("250 2.0.0")
    assert tree(server.root) == before


def test_bad_local_part_with_control_bytes(server, connect):
    before = tree(server.root)
    c = greeted(connect, server)
    c.cmd("MAIL FROM:<a@b.test>")
    c.send(b"RCPT TO:<a\x01b@localhost>\r\n")
    assert c.reply_line().startswith("501 5.1.3")
    c.send(b"RCPT TO:<a\x00b@localhost>\r\n")
    assert c.reply_line().startswith("501")
    c.send(b"RCPT TO:<a\tb@localhost>\r\n")
    assert c.reply_line().startswith("501")
    c.send(b"RCPT TO:<a b@localhost>\r\n")
    assert c.reply_line().startswith("501")
    assert tree(server.root) == before


def test_longest_valid_local_part_is_only_unknown(server, connect):
    c = greeted(connect, server)
    c.cmd("MAIL FROM:<a@b.test>")
    ok = "a-b_c+d." + "x" * 56
    assert len(ok) == 64
    assert c.cmd("RCPT TO:<%s@localhost>" % ok).startswith("550 5.1.1")


def test_quit_closes_after_pending_replies(server, connect):
    c = connect(server.port)
    c.send("EHLO x.test\r\nNOOP\r\nQUIT\r\nNOOP\r\n")
    assert c.reply_line().startswith("220")
    assert c.reply()[0] == 250
    assert c.reply_line().startswith("250 2.0.0")
    assert c.reply_line().startswith("221 2.0.0")
    assert c.closed()
    assert c.buf == b"", "nothing after 221: %r" % c.buf


def test_no_reply_to_a_partial_command(server, connect):
    c = greeted(connect, server)
    c.send("NOO")
    assert no_reply(c, 1.0)
    c.send("P\r\n")
    assert c.reply_line().startswith("250 2.0.0")


def test_address_literal_as_helo(server, connect):
    c = greeted(connect, server, ehlo="[127.0.0.1]")
    queue_id(send_mail(c, "a@b.test", ["postmaster@localhost"], MSG))
    _, fields, _ = parse_trace(only_file(server, "postmaster")[1])
    assert fields["helo"] == "[127.0.0.1]"
