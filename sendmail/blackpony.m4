divert(-1)
# sendmail mailer definition for blackpony-mailer, the outbound side of
# blackpony. Install as /usr/share/sendmail/cf/mailer/blackpony.m4 and add
#
#     MAILER(smtp)dnl
#     MAILER(blackpony)dnl
#     FEATURE(`mailertable')dnl
#
# to sendmail.mc, then route remote mail through it in /etc/mail/mailertable:
#
#     .    blackpony:%1
#
# so $h is the recipient's domain (the mailer finds the MX itself).
# The flags and rulesets are those of the stock esmtp mailer; A= has $h and
# no $u, so sendmail speaks SMTP to the program over a pipe.
divert(0)dnl
ifdef(`BLACKPONY_MAILER_PATH',, `define(`BLACKPONY_MAILER_PATH', `/usr/local/sbin/blackpony-mailer')')dnl
ifdef(`BLACKPONY_MAILER_ARGS',, `define(`BLACKPONY_MAILER_ARGS', `blackpony-mailer $h')')dnl
MAILER_DEFINITIONS
Mblackpony,	P=BLACKPONY_MAILER_PATH, F=mDFMuXa, S=EnvFromSMTP/HdrFromSMTP, R=EnvToSMTP,
		E=\r\n, L=990, T=DNS/RFC822/SMTP, A=BLACKPONY_MAILER_ARGS
