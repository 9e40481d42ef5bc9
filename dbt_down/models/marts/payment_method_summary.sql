with

payments as (

    select * from {{ ref('stg_order_payments') }}

),

final as (

    select
        payment_method,
        count(*) as payment_count,
        sum(case when is_refund then 1 else 0 end) as refund_count,
        sum(payment_amount) as net_amount

    from payments

    group by payment_method

)

select * from final
