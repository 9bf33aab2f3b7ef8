-- expect: bounded
-- encode(.., hex) doubles a value per call; chained
SELECT encode(encode(encode(encode(encode(encode(encode(encode(encode(encode(encode(encode(encode(encode(encode(encode(encode(encode(encode(encode(encode(encode(encode(encode('abcdefgh', 'hex'), 'hex'), 'hex'), 'hex'), 'hex'), 'hex'), 'hex'), 'hex'), 'hex'), 'hex'), 'hex'), 'hex'), 'hex'), 'hex'), 'hex'), 'hex'), 'hex'), 'hex'), 'hex'), 'hex'), 'hex'), 'hex'), 'hex'), 'hex')
